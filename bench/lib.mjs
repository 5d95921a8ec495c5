// Shared helpers of the benchmark scripts (plain Node ESM, no build step). Everything here uses the
// BUILT packages (run `npm run build` first): the worker and producer run as real processes, exactly
// as `node apps/*/dist/main.js` in production.
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startTestRedis, uniquePrefix as untaggedPrefix } from '../packages/shared/dist/testing/index.js';
import { assignFairPriorities, estimateTextTokens, loadConfig, promptJobOptions, QueueName } from '../packages/shared/dist/index.js';

export { startTestRedis, QueueName };

/**
 * A fresh prefix in the form the apps read REDIS_PREFIX (`{name}`: BullMQ's keys in one hash slot,
 * docs/decisions/redis-cluster.md), so queues opened here, raw BullMQ workers and our workers meet.
 */
export function uniquePrefix(label) {
  return `{${untaggedPrefix(label)}}`;
}
export { createEmulator, startEmulatorProcess } from '../packages/gemini-emulator/dist/index.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const WORKER_MAIN = join(ROOT, 'apps/worker/dist/main.js');
export const PRODUCER_MAIN = join(ROOT, 'apps/producer/dist/main.js');
export const RAW_WORKER = join(ROOT, 'bench/raw-worker.mjs');
export const MODEL = 'gemini-3.6-flash';
export const EMULATOR_KEY = 'emulator-key';

/** `--smoke`, `--out=<file>` and `--key=value` options of a bench script. */
export function parseArgs(argv = process.argv.slice(2)) {
  const options = { smoke: false, out: undefined };
  for (const arg of argv) {
    if (arg === '--smoke') options.smoke = true;
    else if (arg.startsWith('--')) {
      const [key, ...rest] = arg.slice(2).split('=');
      options[key] = rest.length > 0 ? rest.join('=') : true;
    }
  }
  return options;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const log = (...parts) => console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...parts);

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed when the bench exits, however it exits.

const children = new Set();
const cleanups = [];

/** Registers a cleanup step (stopping Redis, closing the emulator); run in reverse order. */
export function onCleanup(step) {
  cleanups.push(step);
}

let cleaning;
export function cleanup() {
  cleaning ??= (async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const step of cleanups.reverse()) await Promise.resolve().then(step).catch(() => undefined);
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => void cleanup().finally(() => process.exit(130)));
}
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/**
 * Starts `node <script>` with `env` and waits for `readyLine` on stdout. Keeps only the tail of the
 * output (a 100k-job run must not grow the bench's memory).
 */
export function startProcess(script, env, { readyLine = /listening on (http:\/\/\S+)/, timeoutMs = 20_000, label = script, nodeArgs = [] } = {}) {
  const child = spawn(process.execPath, [...nodeArgs, script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let tail = '';
  let stdout = '';
  const keep = (chunk) => {
    tail = (tail + chunk.toString()).slice(-8_000);
  };
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  void exited.then(() => children.delete(child));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${label} did not print ${readyLine} within ${timeoutMs} ms:\n${tail}`));
    }, timeoutMs);
    const onExit = ({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${label} exited (${code ?? signal}) before it was ready:\n${tail}`));
    };
    void exited.then(onExit);
    child.stdout.on('data', (chunk) => {
      keep(chunk);
      if (stdout === null) return;
      stdout += chunk.toString();
      const match = stdout.match(readyLine);
      if (!match) return;
      stdout = null;
      clearTimeout(timer);
      resolve({
        child,
        pid: child.pid,
        ready: match,
        output: () => tail,
        exited,
        async stop(signal = 'SIGTERM', graceMs = 10_000) {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill(signal);
          const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          const result = await exited;
          clearTimeout(killer);
          return result;
        },
      });
    });
  });
}

/** Base environment of a worker process against `emulatorUrl`, with logs kept out of the way. */
export function workerEnv({ redisUrl, prefix, emulatorUrl, extra = {} }) {
  return {
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    GEMINI_API_KEY: EMULATOR_KEY,
    GEMINI_BASE_URL: emulatorUrl,
    WORKER_PORT: '0',
    AUDIT_LOG: join(scratchDir(), `audit-${process.pid}-${randomUUID().slice(0, 8)}.log`),
    ...extra,
  };
}

export async function startWorkers(count, env, label = 'worker') {
  // BENCH_WORKER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the workers.
  const nodeArgs = process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  return Promise.all(Array.from({ length: count }, (_, i) => startProcess(WORKER_MAIN, env, { label: `${label} ${i + 1}`, nodeArgs })));
}

/** A raw BullMQ worker process (bench/raw-worker.mjs): `mode` noop or naive (see there). */
export async function startRawWorkers(count, env) {
  return Promise.all(
    Array.from({ length: count }, (_, i) => startProcess(RAW_WORKER, env, { readyLine: /raw worker ready/, label: `raw worker ${i + 1}` })),
  );
}

export async function stopAll(processes) {
  await Promise.all(processes.map((p) => p.stop()));
}

let scratch;
/** A temp directory for this bench run, removed at cleanup. */
export function scratchDir() {
  if (!scratch) {
    scratch = mkdtempSync(join(tmpdir(), 'pq-bench-'));
    onCleanup(() => rmSync(scratch, { recursive: true, force: true }));
  }
  return scratch;
}

/** A private redis-server for this bench (stopped at cleanup). */
export async function startRedis() {
  const redis = await startTestRedis();
  onCleanup(() => redis.stop());
  return redis;
}

/** The redis-server's pid (INFO server), for CPU accounting. */
export async function redisPid(client) {
  return Number(/process_id:(\d+)/.exec(await client.info('server'))?.[1] ?? 0);
}

export function redisClient(url) {
  const client = new Redis(url, { maxRetriesPerRequest: null });
  onCleanup(() => client.disconnect());
  return client;
}

// ---------------------------------------------------------------------------------------------
// Jobs, as the producer would enqueue them (payload v1, producer job options, fair priorities).

const config = loadConfig({ NODE_ENV: 'test' });

/** Deterministic pseudo-random prompt text of about `tokens` input tokens, unique per `seed`. */
export function promptText(seed, tokens = 12) {
  const head = `Bench prompt ${seed}: ${createHash('sha256').update(String(seed)).digest('hex').slice(0, 16)}.`;
  const filler = ' lorem ipsum dolor sit amet';
  let text = head;
  while (Math.ceil(Buffer.byteLength(text) / 4) < tokens) text += filler;
  return text.slice(0, Math.max(head.length, tokens * 4));
}

export function jobData(text, { tenant = 'bench', model = MODEL } = {}) {
  return {
    v: 1,
    kind: 'generate',
    tenant,
    model,
    contents: [{ role: 'user', parts: [{ text }] }],
    requestHash: createHash('sha256').update(text).digest('hex'),
    enqueuedAt: Date.now(),
    estimatedInputTokens: estimateTextTokens(text),
  };
}

export function jobId() {
  return `j${randomUUID().replaceAll('-', '')}`;
}

export function openQueue(connection, prefix) {
  const queue = new Queue(QueueName.Prompts, { connection, prefix });
  onCleanup(() => queue.close());
  return queue;
}

/**
 * Adds `count` prompt jobs like the producer does: fair priorities (one round trip per chunk) and
 * `promptJobOptions`. `text(i)` gives the prompt of job i (unique prompts: every job is a cache miss).
 * `options(id, priority)` overrides the job options (the naive baseline's attempts/backoff).
 */
export async function enqueueJobs(queue, redis, prefix, count, { text = (i) => promptText(`${prefix}-${i}`), chunk = 1_000, options, start = 0, model = MODEL } = {}) {
  for (let from = 0; from < count; from += chunk) {
    const n = Math.min(chunk, count - from);
    const priorities = await assignFairPriorities(redis, prefix, 'bench', Array.from({ length: n }, () => 'normal'));
    await queue.addBulk(
      priorities.map((priority, k) => {
        const id = jobId();
        return {
          name: 'generate',
          data: jobData(text(start + from + k), { model }),
          opts: options ? options(id, priority) : promptJobOptions(config, id, priority),
        };
      }),
    );
  }
}

/** Adds one job like the producer's single POST (fair priority, producer options); returns the BullMQ Job. */
export async function addJob(queue, redis, prefix, text) {
  const [priority] = await assignFairPriorities(redis, prefix, 'bench', ['normal']);
  const id = jobId();
  return queue.add('generate', jobData(text), promptJobOptions(config, id, priority));
}

export async function finishedCount(queue) {
  const counts = await queue.getJobCounts('completed', 'failed');
  return { completed: counts.completed, failed: counts.failed, total: counts.completed + counts.failed };
}

/**
 * Polls the queue until `total` jobs are finished; returns the time at which `warm` and `total`
 * finished jobs were first seen, so a rate excludes start-up and warm-up.
 */
export async function watchFinished(queue, { warm, total, timeoutMs, intervalMs = 20 }) {
  const t0 = performance.now();
  let tWarm;
  let warmCount;
  for (;;) {
    const { total: done, failed } = await finishedCount(queue);
    const now = performance.now();
    if (tWarm === undefined && done >= warm) {
      tWarm = now;
      warmCount = done;
    }
    if (done >= total) return { tWarm, warmCount, tEnd: now, endCount: done, failed, rate: ((done - warmCount) * 1000) / (now - tWarm) };
    if (now - t0 > timeoutMs) throw new Error(`timed out: ${done}/${total} jobs finished after ${Math.round(now - t0)} ms`);
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Figures.

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** VmRSS of a process, bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

/** CPU seconds (user + system) a process has used so far; 0 once it is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/** Total CPU seconds used on the machine so far (all cores, from /proc/stat), and the core count. */
export function machineCpuSeconds() {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = line;
  return (user + nice + system + irq + softirq + steal) / 100;
}

export const fmt = {
  rate: (n) => `${Math.round(n).toLocaleString('en-US')}/s`,
  ms: (n) => `${n < 10 ? n.toFixed(1) : Math.round(n)} ms`,
  pct: (n, digits = 1) => `${(n * 100).toFixed(digits)}%`,
  x: (n) => `${n.toFixed(2)}×`,
  mib: (n) => `${(n / 1024 / 1024).toFixed(1)} MiB`,
};

/**
 * A result row. `figure` / `baseline` are display strings; `ratio` the comparison (display string);
 * `met`: true, false, or null when the row has no target of its own.
 */
export function row({ bench, name, figure, baseline = '—', ratio = '—', target = '—', met = null, note = '' }) {
  return { bench, name, figure, baseline, ratio, target, met, note };
}

/** Runs a bench body, writes its rows as JSON to `--out` (or prints them), always cleans up. */
export async function runBench(name, body) {
  const args = parseArgs();
  const started = performance.now();
  let rows = [];
  let error;
  try {
    rows = await body(args);
  } catch (e) {
    error = e instanceof Error ? e.stack ?? e.message : String(e);
    log(`${name} failed: ${error}`);
  } finally {
    await cleanup();
  }
  const result = { bench: name, seconds: (performance.now() - started) / 1000, rows, error };
  if (args.out) writeFileSync(args.out, JSON.stringify(result, null, 2));
  else console.log(JSON.stringify(result, null, 2));
  process.exit(error ? 1 : 0);
}

/**
 * Serves an in-process emulator behind our own server that reports every generateContent answer:
 * `onAnswer({ at, model, status, tokens })`, `at` = arrival, `tokens` = the input tokens the
 * emulator counted (0 unless 200). Closed at cleanup. Returns the base URL.
 */
export async function serveEmulatorWithLog(emulator, onAnswer) {
  const server = createServer((req, res) => {
    const at = Date.now();
    const model = /models\/([^:]+):generateContent/.exec(req.url ?? '')?.[1];
    const end = res.end;
    res.end = function (chunk, ...rest) {
      if (model) {
        const tokens = res.statusCode === 200 && typeof chunk === 'string' ? JSON.parse(chunk).usageMetadata?.promptTokenCount ?? 0 : 0;
        onAnswer({ at, model, status: res.statusCode, tokens });
      }
      return end.call(this, chunk, ...rest);
    };
    emulator.handle(req, res);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${server.address().port}`;
}
