import type { Redis } from 'ioredis';
import { generationLimitIssues, PromptQueueError, promptFeatures, type Config, type Logger, type TokenEstimator } from '@prompt-queue/shared';
import type { Link } from '../providers/chain.js';
import { promptSha256 } from './prompt-digest.js';
import { buildEmbedItem, buildRequest, estimateInputTokens } from './request.js';
import { attemptFacts, jobFateOfError } from './fate.js';
import type { Batch, BatchJob, Fates, JobEntry } from './batch.js';

export interface PrepareDeps {
  config: Config;
  logger: Logger;
  /** Reads image blobs. */
  redis: Redis;
  estimator: TokenEstimator;
}

/**
 * Stage 1: turns the jobs BullMQ handed over into a batch: each job's provider request (image
 * blobs read back), its calibrated input estimate and its prompt digest. A job that cannot be
 * prepared fails alone: its blobs expired (IMAGE_EXPIRED), or its own settings exceed its model's
 * limits (INVALID_JOB: enqueued before the producer checked them, or by another writer). Nothing
 * is reserved for it.
 */
export async function prepareBatch(deps: PrepareDeps, entries: readonly JobEntry[], links: readonly Link[]): Promise<{ batch: Batch; fates: Fates }> {
  const { config, logger, estimator } = deps;
  const first = entries[0]!.data;
  try {
    // Loads each link's calibration on first use; later it refreshes in the background.
    await estimator.prepare(links.map((link) => link.limitKey));
  } catch (error) {
    // Redis trouble: estimate from what this process knows (or the high prior).
    logger.warn('could not load token calibrations', { error: String(error) });
  }
  const fates: Fates = new Map();
  const jobs = await Promise.all(
    entries.map(async (entry): Promise<BatchJob> => {
      const { data } = entry;
      const features = promptFeatures(data.model, data.contents, data.systemInstruction);
      const estimate = first.kind === 'embed' ? estimateInputTokens(data) : Math.max(...links.map((link) => estimator.estimate(link.limitKey, features).reserve));
      const facts = { entry, features, estimate, promptSha256: promptSha256(data) };
      try {
        const ownLimit = ownLimitIssue(config, entry);
        if (ownLimit) throw ownLimit;
        if (first.kind === 'embed') return { ...facts, embedItem: buildEmbedItem(data) };
        return { ...facts, request: await buildRequest(deps.redis, config.redis.prefix, data) };
      } catch (error) {
        const job: BatchJob = facts;
        fates.set(job, jobFateOfError(attemptFacts(entry), error, 0));
        return job;
      }
    }),
  );
  return { batch: { kind: first.kind, model: first.model, jobs, links }, fates };
}

function ownLimitIssue(config: Config, entry: JobEntry): PromptQueueError | undefined {
  const { data } = entry;
  const spec = config.models[data.model];
  const [issue] = spec && data.kind === 'generate' ? generationLimitIssues(data.model, spec, data.generationConfig) : [];
  return issue ? new PromptQueueError('INVALID_JOB', `${issue.path} ${issue.message}`) : undefined;
}
