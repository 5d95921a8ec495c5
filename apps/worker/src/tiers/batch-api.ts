import { GoogleGenAI, type InlinedRequest } from '@google/genai';
import type { GenerateRequest } from '../providers/provider.js';

/**
 * The Gemini Batch API through `@google/genai` (pinned 2.32.0, the newest on Node 20): create,
 * get and list batch jobs, inline requests only. The SDK's own retries are off
 * (`retryOptions: { attempts: 1 }`): the runner retries on its next tick, so retries never multiply.
 */

/** A batch's state as the SDK names it (`JOB_STATE_*`; the wire says `BATCH_STATE_*`). */
export type BatchJobState = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'EXPIRED' | 'UNKNOWN';

export interface BatchStatus {
  name: string;
  state: BatchJobState;
  /** When SUCCEEDED: one per request, in request order, keyed by the request's metadata key. */
  answers: { key: string | undefined; response?: unknown; error?: { code: number; status: string; message: string } }[];
}

export interface BatchApi {
  create(model: string, displayName: string, requests: { key: string; request: GenerateRequest }[]): Promise<string>;
  get(name: string): Promise<BatchStatus>;
  /** The name of a batch created with this display name, if any (a killed submitter's). */
  findByDisplayName(displayName: string): Promise<string | undefined>;
  /** Asks Google to stop a batch nobody waits for any more (requests not yet run are not billed). */
  cancel(name: string): Promise<void>;
}

export interface BatchApiOptions {
  apiKey: string;
  /** The Gemini base URL (`gemini.baseUrl`): Google, or the emulator. */
  baseUrl: string;
  timeoutMs: number;
}

export function createBatchApi(options: BatchApiOptions): BatchApi {
  const ai = new GoogleGenAI({ apiKey: options.apiKey, httpOptions: { baseUrl: options.baseUrl, timeout: options.timeoutMs, retryOptions: { attempts: 1 } } });
  return {
    async create(model, displayName, requests) {
      const src: InlinedRequest[] = requests.map(({ key, request }) => ({
        contents: request.contents,
        metadata: { key },
        ...(request.systemInstruction !== undefined || request.generationConfig !== undefined
          ? { config: { ...(request.generationConfig as object | undefined), ...(request.systemInstruction !== undefined ? { systemInstruction: request.systemInstruction } : {}) } }
          : {}),
      }));
      const created = await ai.batches.create({ model, src, config: { displayName } });
      if (!created.name) throw new Error('the Batch API answered without a batch name');
      return created.name;
    },
    async get(name) {
      const job = await ai.batches.get({ name });
      const state = (job.state ?? 'JOB_STATE_UNKNOWN').replace(/^(JOB|BATCH)_STATE_/, '') as BatchJobState;
      const answers = (job.dest?.inlinedResponses ?? []).map((inlined) => ({
        key: inlined.metadata?.['key'],
        ...(inlined.response !== undefined ? { response: inlined.response } : {}),
        ...(inlined.error ? { error: errorOf(inlined.error) } : {}),
      }));
      return { name, state, answers };
    },
    async cancel(name) {
      await ai.batches.cancel({ name });
    },
    async findByDisplayName(displayName) {
      for await (const job of await ai.batches.list({ config: { pageSize: 100 } })) {
        if (job.displayName === displayName) return job.name;
      }
      return undefined;
    },
  };
}

function errorOf(error: { code?: number; message?: string; details?: unknown }): { code: number; status: string; message: string } {
  const withStatus = error as { status?: unknown };
  return { code: error.code ?? 500, status: typeof withStatus.status === 'string' ? withStatus.status : '', message: error.message ?? 'batch request failed' };
}
