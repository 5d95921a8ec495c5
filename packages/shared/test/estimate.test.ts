import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  calibrate, emptyStats, imageSize, imageTokensByRule, PRIOR_CALIBRATION, promptFeatures, reserveTokens, TokenEstimator,
  type LimitKey, type PromptFeatures,
} from '../src/index.js';
import { startTestRedis, uniquePrefix, type TestRedis } from '../src/testing/index.js';

// --- Image headers, built byte by byte -------------------------------------------------------

function png(width: number, height: number): Buffer {
  const b = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(width, 16);
  b.writeUInt32BE(height, 20);
  return b;
}

function jpeg(width: number, height: number): Buffer {
  const app0 = Buffer.from([0xff, 0xe0, 0x00, 0x10, ...Buffer.from('JFIF\0'), 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  const dht = Buffer.from([0xff, 0xc4, 0x00, 0x04, 0x00, 0x00]); // C4 is not a frame: must be skipped
  const sof = Buffer.alloc(19);
  sof.writeUInt16BE(0xffc2, 0); // progressive
  sof.writeUInt16BE(17, 2);
  sof[4] = 8;
  sof.writeUInt16BE(height, 5);
  sof.writeUInt16BE(width, 7);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), app0, dht, sof]);
}

function webp(chunk: 'VP8 ' | 'VP8L' | 'VP8X', width: number, height: number): Buffer {
  const b = Buffer.alloc(40);
  b.write('RIFF', 0, 'latin1');
  b.writeUInt32LE(32, 4);
  b.write('WEBP', 8, 'latin1');
  b.write(chunk, 12, 'latin1');
  if (chunk === 'VP8 ') {
    b.writeUInt16LE(width, 26);
    b.writeUInt16LE(height, 28);
  } else if (chunk === 'VP8L') {
    b[20] = 0x2f;
    b.writeUInt32LE(((width - 1) & 0x3fff) | (((height - 1) & 0x3fff) << 14), 21);
  } else {
    b.writeUIntLE(width - 1, 24, 3);
    b.writeUIntLE(height - 1, 27, 3);
  }
  return b;
}

function box(type: string, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(8 + payload.length, 0);
  header.write(type, 4, 'latin1');
  return Buffer.concat([header, payload]);
}

function heif(width: number, height: number): Buffer {
  const ispe = Buffer.alloc(12);
  ispe.writeUInt32BE(width, 4);
  ispe.writeUInt32BE(height, 8);
  const meta = box('meta', Buffer.concat([Buffer.alloc(4), box('hdlr', Buffer.alloc(20)), box('iprp', box('ipco', box('ispe', ispe)))]));
  return Buffer.concat([box('ftyp', Buffer.from('heic\0\0\0\0mif1heic', 'latin1')), meta]);
}

describe('imageSize', () => {
  it('reads PNG, JPEG, WebP (VP8, VP8L, VP8X) and HEIF headers without decoding', () => {
    expect(imageSize(png(1920, 1080), 'image/png')).toEqual({ width: 1920, height: 1080 });
    expect(imageSize(jpeg(800, 600), 'image/jpeg')).toEqual({ width: 800, height: 600 });
    expect(imageSize(webp('VP8 ', 300, 200), 'image/webp')).toEqual({ width: 300, height: 200 });
    expect(imageSize(webp('VP8L', 1025, 77), 'image/webp')).toEqual({ width: 1025, height: 77 });
    expect(imageSize(webp('VP8X', 4000, 3000), 'image/webp')).toEqual({ width: 4000, height: 3000 });
    expect(imageSize(heif(4032, 3024), 'image/heic')).toEqual({ width: 4032, height: 3024 });
    expect(imageSize(heif(640, 480), 'IMAGE/HEIF')).toEqual({ width: 640, height: 480 });
  });

  it('answers undefined for truncated, hostile or unknown bytes, never throws', () => {
    expect(imageSize(png(10, 10).subarray(0, 20), 'image/png')).toBeUndefined();
    expect(imageSize(jpeg(10, 10).subarray(0, 30), 'image/jpeg')).toBeUndefined();
    expect(imageSize(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x00]), 'image/jpeg')).toBeUndefined();
    expect(imageSize(Buffer.from('RIFF\0\0\0\0WEBPVP9 '.padEnd(40, '\0')), 'image/webp')).toBeUndefined();
    const looping = box('ftyp', Buffer.alloc(8));
    looping.writeUInt32BE(0xffffffff, 0);
    expect(imageSize(looping, 'image/heif')).toBeUndefined();
    expect(imageSize(png(0, 10), 'image/png')).toBeUndefined();
    expect(imageSize(png(10, 10), 'image/gif')).toBeUndefined();
  });
});

describe('imageTokensByRule', () => {
  it('prices Gemini 2.x images by 768 px tiles past 384 px, Gemini 3 by resolution', () => {
    expect(imageTokensByRule('gemini-2.5-flash', { width: 384, height: 384 })).toBe(258);
    expect(imageTokensByRule('gemini-2.5-flash', { width: 385, height: 100 })).toBe(258);
    expect(imageTokensByRule('gemini-2.5-flash', { width: 1920, height: 1080 })).toBe(3 * 2 * 258);
    expect(imageTokensByRule('gemini-2.5-flash', undefined)).toBe(258);
    expect(imageTokensByRule('gemini-3.6-flash', { width: 100, height: 100 })).toBe(1120);
  });
});

// --- Calibration math ------------------------------------------------------------------------

/** A tokenizer unlike any fixed ratio: code-like ASCII at 3 chars a token, CJK at 1.2 a character. */
const truth = (f: PromptFeatures): number => Math.ceil(f.ascii / 3) + Math.ceil(f.other * 1.2) + f.imageTokens;
const english = (n: number): PromptFeatures => ({ ascii: n, other: 0, imageTokens: 0, parts: 1 });
const japanese = (n: number): PromptFeatures => ({ ascii: 0, other: n, imageTokens: 0, parts: 1 });

/** Folds samples as the Redis script does (decay, then add), for the pure tests. */
function fold(stats = emptyStats(), samples: { f: PromptFeatures; predicted: number; actual: number }[], decay = 0.5 ** (1 / 200)) {
  for (const { f, predicted, actual } of samples) {
    const x = [f.ascii, f.other, f.imageTokens, f.parts];
    stats.n = stats.n * decay + 1;
    stats.xx = stats.xx.map((v) => v * decay);
    stats.xy = stats.xy.map((v, i) => v * decay + x[i]! * actual);
    let k = 0;
    for (let i = 0; i < 4; i++) for (let j = i; j < 4; j++) stats.xx[k++]! += x[i]! * x[j]!;
    stats.rw = stats.rw * decay + predicted;
    stats.r1 = stats.r1 * decay + (actual - predicted);
    stats.r2 = stats.r2 * decay + ((actual - predicted) ** 2) / predicted;
  }
  return stats;
}

/** Runs `count` calls of `make(i)` through estimate → provider count → fold; returns the stats and the misses. */
function simulate(count: number, make: (i: number) => PromptFeatures, stats = emptyStats()) {
  let under = 0;
  for (let i = 0; i < count; i++) {
    const f = make(i);
    const { predicted, reserve } = reserveTokens(calibrate(stats), f);
    const actual = truth(f);
    if (reserve < actual) under++;
    fold(stats, [{ f, predicted, actual }]);
  }
  return { stats, under };
}

describe('calibrate', () => {
  it('errs high before any sample, for prose, code and CJK alike', () => {
    for (const f of [english(800), japanese(300), { ascii: 200, other: 100, imageTokens: 258, parts: 3 }]) {
      expect(reserveTokens(PRIOR_CALIBRATION, f).reserve).toBeGreaterThan(truth(f));
    }
  });

  it('learns a tokenizer unlike its prior and reserves within a few per cent of the truth', () => {
    const { stats, under } = simulate(300, (i) => english(200 + ((i * 7919) % 1200)));
    const calibration = calibrate(stats);
    expect(calibration.weights[0]).toBeCloseTo(1 / 3, 1);
    const f = english(900);
    const { reserve } = reserveTokens(calibration, f);
    expect(reserve).toBeGreaterThanOrEqual(truth(f));
    expect(reserve / truth(f)).toBeLessThan(1.1);
    // Out of sample: hardly any reservation below what the provider then counted.
    expect(under).toBeLessThanOrEqual(3);
  });

  it('prices a script it has not seen at the prior, then follows a switch from English to Japanese', () => {
    const { stats } = simulate(300, (i) => english(200 + ((i * 7919) % 1200)));
    // The first Japanese prompt: the CJK weight is still the (high) prior.
    const first = japanese(400);
    expect(reserveTokens(calibrate(stats), first).reserve).toBeGreaterThan(truth(first));
    const after = simulate(100, (i) => japanese(100 + ((i * 31) % 400)), stats);
    expect(after.under).toBeLessThanOrEqual(2);
    expect(calibrate(after.stats).weights[1]).toBeCloseTo(1.2, 1);
  });

  it('widens the margin when the estimates were low', () => {
    const stats = fold(emptyStats(), Array.from({ length: 50 }, () => ({ f: english(400), predicted: 100, actual: 140 })));
    const calibration = calibrate(stats);
    expect(calibration.bias).toBeCloseTo(0.4, 5);
    expect(calibration.margin).toBeGreaterThanOrEqual(0.4);
  });
});

// --- The fleet's shared calibration in Redis ---------------------------------------------------

describe('TokenEstimator (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  const KEY: LimitKey = { provider: 'gemini', model: 'gemini-3.6-flash' };
  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });

  it('shares what one worker learned with another, and a restart starts from it', async () => {
    const prefix = uniquePrefix();
    const first = new TokenEstimator(redis, prefix);
    await first.prepare([KEY]);
    const samples = Array.from({ length: 120 }, (_, i) => {
      const f = english(300 + ((i * 7919) % 900));
      return { key: KEY, features: f, predicted: first.estimate(KEY, f).predicted, actual: truth(f) };
    });
    await first.record(samples);
    const f = english(600);
    const learned = first.estimate(KEY, f);
    expect(learned.reserve).toBeGreaterThanOrEqual(truth(f));
    expect(learned.reserve).toBeLessThan(reserveTokens(PRIOR_CALIBRATION, f).reserve);

    // Another process (another connection): same estimate as soon as it has loaded the scope.
    const other = new Redis(server.url);
    try {
      const second = new TokenEstimator(other, prefix);
      expect(second.estimate(KEY, f)).toEqual(reserveTokens(PRIOR_CALIBRATION, f));
      await second.prepare([KEY]);
      expect(second.estimate(KEY, f).predicted).toBeCloseTo(learned.predicted, 6);
    } finally {
      other.disconnect();
    }
  });

  it('refreshes a stale scope in the background and keeps scopes apart', async () => {
    const prefix = uniquePrefix();
    let now = 0;
    const reader = new TokenEstimator(redis, prefix, { now: () => now, refreshMs: 1_000 });
    const writer = new TokenEstimator(redis, prefix);
    const other: LimitKey = { provider: 'openai', model: 'gemini-3.6-flash' };
    await reader.prepare([KEY, other]);
    await writer.record(Array.from({ length: 60 }, () => ({ key: KEY, features: english(900), predicted: 450, actual: 300 })));
    const f = english(900);
    const before = reader.estimate(KEY, f).predicted;
    await reader.prepare([KEY]); // fresh: no read
    expect(reader.estimate(KEY, f).predicted).toBe(before);
    now = 1_000;
    await reader.prepare([KEY]); // stale: refresh in the background, this batch keeps the old value
    await expect.poll(() => reader.estimate(KEY, f).predicted).toBeLessThan(before);
    expect(reader.estimate(other, f)).toEqual(reserveTokens(PRIOR_CALIBRATION, f));
  });

  it('stores per-image sizes through promptFeatures', () => {
    const features = promptFeatures('gemini-2.5-flash', [
      { role: 'user', parts: [{ text: 'héllo' }, { blob: { mimeType: 'image/png', sha256: 'a'.repeat(64), bytes: 10, width: 1920, height: 1080 } }] },
    ], 'sys');
    expect(features).toEqual({ ascii: 7, other: 1, imageTokens: 6 * 258, parts: 3 });
  });
});
