// The baselines: a raw BullMQ Worker on the same `prompts` queue, in its own process.
//   RAW_MODE=noop   the processor returns at once (the floor of BullMQ's own cost per job)
//   RAW_MODE=naive  what most people write: BullMQ's job-count limiter (RAW_LIMIT_MAX jobs per
//                   RAW_LIMIT_DURATION_MS) and the Gemini SDK; a 429 throws, BullMQ retries it with the
//                   job's own attempts/backoff (set at enqueue by the bench)
//   RAW_MODE=provider  the SDK call without limiter or retries (latency baseline with a provider)
// Env: REDIS_URL, REDIS_PREFIX, RAW_CONCURRENCY (default 64), GEMINI_BASE_URL, GEMINI_API_KEY.
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { GoogleGenerativeAI } from '@google/generative-ai';

const env = process.env;
const mode = env.RAW_MODE ?? 'noop';
const connection = new Redis(env.REDIS_URL, { maxRetriesPerRequest: null });

let processor;
if (mode === 'noop') {
  processor = async () => ({ ok: true });
} else {
  const genAI = new GoogleGenerativeAI(env.GEMINI_API_KEY);
  const models = new Map();
  const modelFor = (name) => {
    let model = models.get(name);
    if (!model) models.set(name, (model = genAI.getGenerativeModel({ model: name }, { baseUrl: env.GEMINI_BASE_URL })));
    return model;
  };
  processor = async (job) => {
    const started = performance.now();
    const response = await modelFor(job.data.model).generateContent({ contents: job.data.contents });
    return {
      text: response.response.text(),
      inputTokens: response.response.usageMetadata?.promptTokenCount ?? 0,
      latencyMs: performance.now() - started,
    };
  };
}

const worker = new Worker('prompts', processor, {
  connection,
  prefix: env.REDIS_PREFIX,
  concurrency: Number(env.RAW_CONCURRENCY ?? 64),
  ...(mode === 'naive' && env.RAW_LIMIT_MAX
    ? { limiter: { max: Number(env.RAW_LIMIT_MAX), duration: Number(env.RAW_LIMIT_DURATION_MS ?? 60_000) } }
    : {}),
});
worker.on('error', (error) => console.error('raw worker error', error.message));

const stop = async () => {
  await worker.close().catch(() => undefined);
  connection.disconnect();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

await worker.waitUntilReady();
console.log(`raw worker ready (${mode})`);
