import type { Redis } from 'ioredis';
import type { LimitKey } from '../limits/types.js';
import { limiterKey } from '../redis/keys.js';
import {
  calibrate, emptyStats, FEATURES, featureVector, PRIOR_CALIBRATION, reserveTokens, UPPER_TRIANGLE,
  type Calibration, type CalibrationStats,
} from './calibration.js';
import type { PromptFeatures } from './features.js';
import { slotPipeline } from '../redis/cluster.js';

/** The hash fields of one scope's statistics, in the order the script reads and returns them. */
const FIELDS = [
  'n',
  ...Array.from({ length: UPPER_TRIANGLE }, (_, i) => `xx${i}`),
  ...Array.from({ length: FEATURES }, (_, i) => `xy${i}`),
  'rw', 'r1', 'r2',
];

/** Folds samples into one scope's decayed statistics; returns them. */
const RECORD_LUA = `--[[
  record: folds settled calls into the token calibration of one scope.

  KEYS[1]  calib: hash of decayed sums (fields: n, xx0..xx${UPPER_TRIANGLE - 1}, xy0..xy${FEATURES - 1}, rw, r1, r2)
  ARGV[1]  decay per sample, in (0, 1]
  ARGV[2]  TTL of the hash, ms (refreshed on every write)
  ARGV[3..] per sample: ${FEATURES} features, the prediction it was reserved with, the actual count

  Returns the updated sums as strings, in field order. Every sum is multiplied by the decay before
  a sample is added, so a sample k samples old weighs decay^k.
]]
local fields = { ${FIELDS.map((f) => `'${f}'`).join(', ')} }
local d = ${FEATURES}
local current = redis.call('HMGET', KEYS[1], unpack(fields))
local s = {}
for i = 1, #fields do s[i] = tonumber(current[i]) or 0 end
local decay = tonumber(ARGV[1])
local xxBase, xyBase = 1, 1 + ${UPPER_TRIANGLE}
local rBase = xyBase + d
for at = 3, #ARGV, d + 2 do
  for i = 1, #s do s[i] = s[i] * decay end
  local x = {}
  for j = 1, d do x[j] = tonumber(ARGV[at + j - 1]) end
  local p = tonumber(ARGV[at + d])
  local y = tonumber(ARGV[at + d + 1])
  s[1] = s[1] + 1
  local k = xxBase + 1
  for i = 1, d do
    for j = i, d do
      s[k] = s[k] + x[i] * x[j]
      k = k + 1
    end
    s[xyBase + i] = s[xyBase + i] + x[i] * y
  end
  if p > 0 then
    s[rBase + 1] = s[rBase + 1] + p
    s[rBase + 2] = s[rBase + 2] + (y - p)
    s[rBase + 3] = s[rBase + 3] + (y - p) * (y - p) / p
  end
end
local args = {}
local out = {}
for i = 1, #fields do
  args[#args + 1] = fields[i]
  args[#args + 1] = string.format('%.17g', s[i])
  out[i] = args[#args]
end
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return out
`;

export interface TokenEstimatorOptions {
  /** Samples after which an old sample weighs half. @defaultValue 200 */
  halfLifeSamples?: number;
  /** A worker re-reads a scope's calibration this often at most (others' samples), ms. @defaultValue 1000 */
  refreshMs?: number;
  /** An unused scope's calibration is forgotten after this, ms. @defaultValue 7 days */
  ttlMs?: number;
  /** Clock for refreshes (tests). */
  now?: () => number;
}

/** One settled call: what the estimate saw, what it predicted (before margin), what the provider counted. */
export interface EstimateSample {
  key: LimitKey;
  features: PromptFeatures;
  predicted: number;
  actual: number;
}

export interface TokenEstimate {
  /** Expected input tokens. */
  predicted: number;
  /** Tokens to reserve: the prediction plus the scope's measured margin. */
  reserve: number;
}

interface CacheEntry {
  calibration: Calibration;
  loadedAt: number;
  loading?: Promise<void>;
}

type EstimatorRedis = Redis & { pqCalibrationRecord(key: string, ...args: (string | number)[]): Promise<string[]> };

/**
 * The fleet's calibrated input-token estimator, one calibration per limiter scope (provider, model,
 * project), kept in Redis so every worker and every restart starts from what the fleet knows.
 * `estimate()` is synchronous, from a per-process copy; `prepare()` loads a scope before its first
 * use and refreshes it in the background after `refreshMs`; `record()` folds settled calls in (one
 * script per scope, pipelined: one round trip) and takes the fleet's updated sums back at once.
 */
export class TokenEstimator {
  private readonly redis: EstimatorRedis;
  private readonly decay: number;
  private readonly refreshMs: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, CacheEntry>();

  constructor(redis: Redis, private readonly prefix: string, options: TokenEstimatorOptions = {}) {
    const halfLife = options.halfLifeSamples ?? 200;
    if (!(halfLife >= 1)) throw new RangeError('halfLifeSamples must be ≥ 1');
    this.decay = 0.5 ** (1 / halfLife);
    this.refreshMs = options.refreshMs ?? 1_000;
    this.ttlMs = options.ttlMs ?? 7 * 24 * 3_600_000;
    this.now = options.now ?? Date.now;
    redis.defineCommand('pqCalibrationRecord', { numberOfKeys: 1, lua: RECORD_LUA });
    this.redis = redis as EstimatorRedis;
  }

  /** Makes `estimate()` current for these scopes: awaits a first load, refreshes stale ones in the background. */
  async prepare(keys: readonly LimitKey[]): Promise<void> {
    const loads: Promise<void>[] = [];
    for (const key of keys) {
      const id = this.id(key);
      const entry = this.cache.get(id);
      if (!entry) loads.push(this.load(id));
      else if (entry.loading) loads.push(entry.loading);
      else if (this.now() - entry.loadedAt >= this.refreshMs) void this.load(id).catch(() => undefined);
    }
    await Promise.all(loads);
  }

  /** The scope's current calibration (the prior until it is loaded). */
  calibration(key: LimitKey): Calibration {
    return this.cache.get(this.id(key))?.calibration ?? PRIOR_CALIBRATION;
  }

  estimate(key: LimitKey, features: PromptFeatures): TokenEstimate {
    return reserveTokens(this.calibration(key), features);
  }

  /** Folds settled calls into their scopes' calibrations. One round trip for the batch. */
  async record(samples: readonly EstimateSample[]): Promise<void> {
    const byScope = new Map<string, (string | number)[]>();
    for (const sample of samples) {
      if (!(sample.actual >= 0) || !(sample.predicted >= 0)) continue;
      const id = this.id(sample.key);
      const args = byScope.get(id) ?? [];
      args.push(...featureVector(sample.features), sample.predicted, sample.actual);
      byScope.set(id, args);
    }
    if (byScope.size === 0) return;
    const pipeline = slotPipeline(this.redis) as ReturnType<Redis['pipeline']> & { pqCalibrationRecord(key: string, ...args: (string | number)[]): unknown };
    const ids = [...byScope.keys()];
    for (const id of ids) pipeline.pqCalibrationRecord(id, this.decay, this.ttlMs, ...byScope.get(id)!);
    const results = (await pipeline.exec()) ?? [];
    results.forEach(([error, values], i) => {
      if (error) throw error;
      this.store(ids[i]!, values as string[]);
    });
  }

  private load(id: string): Promise<void> {
    const entry = this.cache.get(id);
    const loading = this.redis
      .hmget(id, ...FIELDS)
      .then((values) => this.store(id, values))
      .finally(() => {
        const current = this.cache.get(id);
        if (current) delete current.loading;
      });
    if (entry) entry.loading = loading;
    else this.cache.set(id, { calibration: PRIOR_CALIBRATION, loadedAt: this.now(), loading });
    return loading;
  }

  private store(id: string, values: readonly (string | null)[]): void {
    const entry = this.cache.get(id);
    const calibration = calibrate(parseStats(values));
    if (entry) {
      entry.calibration = calibration;
      entry.loadedAt = this.now();
    } else {
      this.cache.set(id, { calibration, loadedAt: this.now() });
    }
  }

  private id(key: LimitKey): string {
    return limiterKey(this.prefix, key, 'calib');
  }
}

function parseStats(values: readonly (string | null)[]): CalibrationStats {
  const stats = emptyStats();
  const number = (i: number): number => {
    const n = Number(values[i] ?? 0);
    return Number.isFinite(n) ? n : 0;
  };
  stats.n = number(0);
  for (let i = 0; i < UPPER_TRIANGLE; i++) stats.xx[i] = number(1 + i);
  for (let i = 0; i < FEATURES; i++) stats.xy[i] = number(1 + UPPER_TRIANGLE + i);
  const r = 1 + UPPER_TRIANGLE + FEATURES;
  stats.rw = number(r);
  stats.r1 = number(r + 1);
  stats.r2 = number(r + 2);
  return stats;
}
