// Producer: HTTP enqueue rate of the producer process versus raw BullMQ adds from the bench process,
// same Redis, same payload shape and job options, same client concurrency.
//   single: POST /v1/jobs (one job per request, 32 requests in flight, keep-alive)
//           vs queue.add (32 in flight on one ioredis connection)
//   bulk:   POST /v1/jobs/bulk with 500 jobs per request (4 in flight) vs queue.addBulk of 500 (4 in flight)
// The producer validates, hashes, reserves fair priorities (one Lua call per request) and adds; the
// raw side only adds. The HTTP client (fetch) runs in the bench process on the same cores.
// LOG_LEVEL=warn (no access-log line per request).
import { randomUUID } from 'node:crypto';
import {
  fmt, jobData, jobId, log, openQueue, PRODUCER_MAIN, promptText, redisClient, row, runBench, sleep, startProcess, startRedis,
  uniquePrefix,
} from './lib.mjs';
import { loadConfig, promptJobOptions } from '../packages/shared/dist/index.js';

const KEY = 'bench-producer-key';
const config = loadConfig({ NODE_ENV: 'test' });

await runBench('producer', async ({ smoke }) => {
  const seconds = smoke ? 1 : 8;
  const warmSeconds = smoke ? 0.3 : 2;
  const single = { concurrency: 32 };
  const bulk = { concurrency: 4, size: 500 };
  const redis = await startRedis();
  const client = redisClient(redis.url);

  /** Runs `op` from `concurrency` loops for warm-up + `seconds`; returns jobs/s in the measured part. */
  async function drive(concurrency, jobsPerOp, op) {
    let counting = false;
    let done = 0;
    let stop = false;
    let failure;
    const loops = Array.from({ length: concurrency }, async () => {
      while (!stop) {
        try {
          await op();
        } catch (error) {
          failure ??= error;
          stop = true;
        }
        if (counting) done += jobsPerOp;
      }
    });
    await sleep(warmSeconds * 1000);
    counting = true;
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const counted = done;
    stop = true;
    await Promise.all(loops);
    if (failure) throw failure;
    return counted / elapsed;
  }

  let n = 0;
  const body = () => ({ prompt: promptText(`p${n++}-${randomUUID()}`) });

  async function viaHttp(kind) {
    const prefix = uniquePrefix('prod');
    const producer = await startProcess(PRODUCER_MAIN, {
      NODE_ENV: 'test', LOG_LEVEL: 'warn', REDIS_URL: redis.url, REDIS_PREFIX: prefix, PRODUCER_PORT: '0', API_KEYS: `bench:${KEY}`,
    }, { label: 'producer' });
    const api = producer.ready[1];
    const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
    const post = async (path, payload) => {
      const response = await fetch(`${api}${path}`, { method: 'POST', headers, body: JSON.stringify(payload) });
      const text = await response.text();
      if (response.status !== 202) throw new Error(`${path}: ${response.status} ${text.slice(0, 300)}`);
    };
    const rate =
      kind === 'single'
        ? await drive(single.concurrency, 1, () => post('/v1/jobs', body()))
        : await drive(bulk.concurrency, bulk.size, () => post('/v1/jobs/bulk', { jobs: Array.from({ length: bulk.size }, body) }));
    await producer.stop();
    await client.flushall();
    log(`producer http ${kind}: ${fmt.rate(rate)}`);
    return rate;
  }

  async function raw(kind) {
    const prefix = uniquePrefix('raw');
    const queue = openQueue(client, prefix);
    const job = () => {
      const id = jobId();
      return { name: 'generate', data: jobData(body().prompt), opts: promptJobOptions(config, id, 2) };
    };
    const rate =
      kind === 'single'
        ? await drive(single.concurrency, 1, () => {
            const { name, data, opts } = job();
            return queue.add(name, data, opts);
          })
        : await drive(bulk.concurrency, bulk.size, () => queue.addBulk(Array.from({ length: bulk.size }, job)));
    await queue.close();
    await client.flushall();
    log(`producer raw ${kind}: ${fmt.rate(rate)}`);
    return rate;
  }

  const results = {};
  for (const kind of ['single', 'bulk']) {
    // raw, http, raw, http: the baseline is taken next to the figure, and on a noisy machine both
    // sides get the same conditions on average.
    const rawRates = [await raw(kind)];
    const httpRates = [await viaHttp(kind)];
    if (!smoke) {
      httpRates.push(await viaHttp(kind));
      rawRates.push(await raw(kind));
    }
    const avg = (values) => values.reduce((a, b) => a + b, 0) / values.length;
    results[kind] = { http: avg(httpRates), raw: avg(rawRates) };
  }
  const s = results.single.http / results.single.raw;
  const b = results.bulk.http / results.bulk.raw;
  return [
    row({
      bench: 'Producer',
      name: `POST /v1/jobs, ${single.concurrency} requests in flight`,
      figure: fmt.rate(results.single.http),
      baseline: `${fmt.rate(results.single.raw)} (raw queue.add, ${single.concurrency} in flight)`,
      ratio: fmt.x(s),
      target: '≥ 0.40×',
      met: s >= 0.4,
    }),
    row({
      bench: 'Producer',
      name: `POST /v1/jobs/bulk, ${bulk.size} jobs per request, ${bulk.concurrency} in flight`,
      figure: fmt.rate(results.bulk.http),
      baseline: `${fmt.rate(results.bulk.raw)} (raw addBulk of ${bulk.size}, ${bulk.concurrency} in flight)`,
      ratio: fmt.x(b),
      target: '≥ 0.50×',
      met: b >= 0.5,
      note: 'jobs per second; the HTTP client shares the cores',
    }),
  ];
});
