import type { Config } from '@prompt-queue/shared';
import { createBatchApi, type BatchApi } from './batch-api.js';

/**
 * Which jobs may go through the Batch API, and the client that submits them. Only the Gemini API
 * has the Batch API we use (inline `batchGenerateContent`): a job may batch when the first link of
 * its model's chain is a `gemini` link (Vertex batch prediction reads from Cloud Storage or
 * BigQuery, and OpenAI-compatible servers have none). The batch is sent with that link's
 * `baseUrl` and first API key, else `gemini.baseUrl` and the first of `gemini.apiKeys`.
 */

interface GeminiLinkFields {
  provider: string;
  model?: string;
  baseUrl?: string;
  apiKeys?: string[];
}

function firstLink(config: Config, jobModel: string): GeminiLinkFields | undefined {
  const chain = (config.chains[jobModel] ?? config.chains.default) as GeminiLinkFields[] | undefined;
  return chain === undefined || chain.length === 0 ? { provider: 'gemini' } : chain[0];
}

/** The model a job of `jobModel` is batched as, or undefined when it cannot batch. */
export function batchModelFor(config: Config, jobModel: string): string | undefined {
  if (!config.tiers.batch.enabled) return undefined;
  const link = firstLink(config, jobModel);
  if (link?.provider !== 'gemini') return undefined;
  return link.model === undefined || link.model === '$job' ? jobModel : link.model;
}

/** One client per model, built on first use. */
export function batchApis(config: Config): (model: string) => BatchApi {
  const clients = new Map<string, BatchApi>();
  return (model) => {
    let api = clients.get(model);
    if (!api) {
      const link = firstLink(config, model);
      const apiKey = link?.apiKeys?.[0] ?? config.gemini.apiKeys[0] ?? '';
      api = createBatchApi({ apiKey, baseUrl: link?.baseUrl ?? config.gemini.baseUrl, timeoutMs: config.gemini.timeoutMs });
      clients.set(model, api);
    }
    return api;
  };
}
