import type { Redis } from 'ioredis';
import { historyKey } from '../redis/keys.js';

/**
 * Fleet history the dashboard charts from the moment its page opens: queue depth over the last
 * hour and provider-call latency over the last minutes. Workers write it (like BullMQ's
 * throughput metrics), the dashboard reads it; each series is one bounded sorted set.
 */

/** One queue-depth sample per this many ms, fleet-wide. */
export const DEPTH_SAMPLE_MS = 10_000;
/** How far back the depth history goes, ms. */
export const DEPTH_HISTORY_MS = 3_600_000;
/** Provider latencies are summarised over this window, ms. */
export const LATENCY_WINDOW_MS = 15 * 60_000;
/** The most latency samples kept (the newest), whatever the traffic. */
export const LATENCY_MAX_SAMPLES = 5_000;

/** Jobs by state at one moment; `at` is the start of its bucket, epoch ms. */
export interface DepthSample {
  at: number;
  waiting: number;
  prioritized: number;
  delayed: number;
  active: number;
}

/** One finished provider call: its link (`provider:model`), how long it took and when it ended. */
export interface LatencySample {
  link: string;
  latencyMs: number;
  at: number;
}

/**
 * Records a depth sample unless the fleet has one for its bucket already (the first worker to
 * report a bucket wins), and drops samples older than the history.
 *   KEYS[1] the depth history (sorted set; member `<bucket>|<json>`, score = bucket start)
 *   ARGV[1] bucket start, epoch ms; ARGV[2] member; ARGV[3] oldest bucket kept; ARGV[4] key TTL, ms
 */
const RECORD_DEPTH_LUA = `
if redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`;

const withScript = new WeakSet<Redis>();
type DepthCommand = (key: string, bucket: number, member: string, oldest: number, ttlMs: number) => Promise<number>;

/** Records the fleet's queue depth for the bucket of `nowMs` (one sample per bucket, fleet-wide). */
export async function recordDepthSample(redis: Redis, prefix: string, counts: Omit<DepthSample, 'at'>, nowMs = Date.now()): Promise<void> {
  if (!withScript.has(redis)) {
    redis.defineCommand('pqRecordDepth', { numberOfKeys: 1, lua: RECORD_DEPTH_LUA });
    withScript.add(redis);
  }
  const at = Math.floor(nowMs / DEPTH_SAMPLE_MS) * DEPTH_SAMPLE_MS;
  const sample: DepthSample = { at, waiting: counts.waiting, prioritized: counts.prioritized, delayed: counts.delayed, active: counts.active };
  const record = (redis as unknown as { pqRecordDepth: DepthCommand }).pqRecordDepth.bind(redis);
  await record(historyKey(prefix, 'depth'), at, `${at}|${JSON.stringify(sample)}`, at - DEPTH_HISTORY_MS, 2 * DEPTH_HISTORY_MS);
}

/** The depth samples of the last hour, oldest first (gaps where no worker ran). */
export async function readDepthHistory(redis: Redis, prefix: string, nowMs = Date.now()): Promise<DepthSample[]> {
  const members = await redis.zrangebyscore(historyKey(prefix, 'depth'), nowMs - DEPTH_HISTORY_MS, '+inf');
  return members.flatMap((member) => {
    const sample = parseJson(member.slice(member.indexOf('|') + 1));
    return sample && typeof sample.at === 'number' ? [sample as unknown as DepthSample] : [];
  });
}

/** Adds finished calls' latencies (one round trip), keeping the newest `LATENCY_MAX_SAMPLES` of the window. */
export async function recordProviderLatencies(redis: Redis, prefix: string, samples: readonly LatencySample[], nowMs = Date.now()): Promise<void> {
  if (samples.length === 0) return;
  const key = historyKey(prefix, 'latency');
  const args = samples.flatMap((sample, i) => [sample.at, `${sample.link}|${Math.round(sample.latencyMs)}|${sample.at}|${i}${Math.random().toString(36).slice(2, 8)}`]);
  await redis
    .multi()
    .zadd(key, ...args)
    .zremrangebyscore(key, '-inf', `(${nowMs - LATENCY_WINDOW_MS}`)
    .zremrangebyrank(key, 0, -(LATENCY_MAX_SAMPLES + 1))
    .pexpire(key, 2 * LATENCY_WINDOW_MS)
    .exec();
}

/** Latencies of the window by link, ms (newest last). */
export async function readProviderLatencies(redis: Redis, prefix: string, nowMs = Date.now()): Promise<Record<string, number[]>> {
  const members = await redis.zrangebyscore(historyKey(prefix, 'latency'), nowMs - LATENCY_WINDOW_MS, '+inf');
  const byLink: Record<string, number[]> = {};
  for (const member of members) {
    const [link, latency] = member.split('|');
    const ms = Number(latency);
    if (!link || !Number.isFinite(ms)) continue;
    (byLink[link] ??= []).push(ms);
  }
  return byLink;
}

/** The `p`-th percentile (0..100) of `values` by nearest rank; null when there are none. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
