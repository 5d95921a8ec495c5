// Live job events in per-tenant Redis Streams (events/job-events.ts), against a private Redis.
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  appendJobEvents,
  compareStreamIds,
  jobEventsKey,
  lastJobEventId,
  parseStreamId,
  readJobEvents,
  readJobEventsOfTenants,
  type JobEvent,
} from '../src/index.js';
import { uniquePrefix } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

const at = '2026-01-01T00:00:00.000Z';
const event = (jobId: string, type: JobEvent['type'], tenant = 'acme', extra: Partial<JobEvent> = {}): JobEvent => ({ type, jobId, tenant, at, ...extra });

describe('job events (real Redis)', () => {
  let redis: Redis;
  usePrivateRedis((started) => ({ redis } = started));

  async function append(prefix: string, events: JobEvent[], maxLen = 1_000): Promise<void> {
    const pipeline = redis.pipeline();
    appendJobEvents(pipeline, prefix, events, maxLen);
    const results = await pipeline.exec();
    for (const [error] of results ?? []) if (error) throw error;
  }

  it('appends to the caller\'s pipeline and reads back in order, each with its stream id', async () => {
    const prefix = uniquePrefix();
    const pipeline = redis.pipeline();
    appendJobEvents(pipeline, prefix, [event('j1', 'queued'), event('j1', 'active', 'acme', { attempt: 1 })], 100);
    expect(pipeline.length).toBe(2); // queued, not sent: the caller executes
    expect(await redis.exists(jobEventsKey(prefix, 'acme'))).toBe(0);
    await pipeline.exec();
    await append(prefix, [event('j1', 'waiting', 'acme', { reason: 'quota', until: at }), event('j1', 'completed', 'acme', { attempt: 1 })]);

    const read = await readJobEvents(redis, prefix, 'acme', '0-0', 100);
    expect(read.map((e) => e.type)).toEqual(['queued', 'active', 'waiting', 'completed']);
    expect(read[1]).toEqual({ id: expect.stringMatching(/^\d+-\d+$/), type: 'active', jobId: 'j1', tenant: 'acme', at, attempt: 1 });
    expect(read[2]).toMatchObject({ reason: 'quota', until: at });
    const ids = read.map((e) => e.id);
    expect([...ids].sort(compareStreamIds)).toEqual(ids);

    // After an id is exclusive, and count bounds the answer.
    expect((await readJobEvents(redis, prefix, 'acme', ids[1]!, 1)).map((e) => e.id)).toEqual([ids[2]]);
    expect(await readJobEvents(redis, prefix, 'acme', ids[3]!, 10)).toEqual([]);
    expect(await lastJobEventId(redis, prefix, 'acme')).toBe(ids[3]);
    expect(await lastJobEventId(redis, prefix, 'nobody')).toBe('0-0');
  });

  it('stores only the event\'s own fields: nothing else a caller passes reaches the stream', async () => {
    const prefix = uniquePrefix();
    const leaky = { ...event('j1', 'queued'), contents: 'secret prompt text' } as JobEvent;
    await append(prefix, [leaky]);
    const [, fields] = (await redis.xrange(jobEventsKey(prefix, 'acme'), '-', '+'))[0]!;
    expect(fields.join(' ')).not.toContain('secret prompt text');
    expect(await readJobEvents(redis, prefix, 'acme', '0', 10)).toEqual([{ ...event('j1', 'queued'), id: expect.any(String) }]);
  });

  it('trims each stream to about maxLen, dropping the oldest', async () => {
    const prefix = uniquePrefix();
    const maxLen = 100;
    for (let batch = 0; batch < 10; batch++) {
      await append(prefix, Array.from({ length: 100 }, (_, i) => event(`j${batch * 100 + i}`, 'queued')), maxLen);
    }
    const length = await redis.xlen(jobEventsKey(prefix, 'acme'));
    // MAXLEN ~ trims whole stream nodes (100 entries by default): never below maxLen, at most a node above.
    expect(length).toBeGreaterThanOrEqual(maxLen);
    expect(length).toBeLessThanOrEqual(maxLen + 100);
    const kept = await readJobEvents(redis, prefix, 'acme', '0-0', 1_000);
    expect(kept).toHaveLength(length);
    expect(kept.at(-1)!.jobId).toBe('j999');
    expect(kept[0]!.jobId).toBe(`j${1_000 - length}`);
  });

  it('keeps tenants apart: one stream per tenant, hash-tagged', async () => {
    const prefix = uniquePrefix();
    await append(prefix, [event('a1', 'queued', 'acme'), event('g1', 'queued', 'globex'), event('a2', 'queued', 'acme')]);
    expect(jobEventsKey(prefix, 'acme')).toBe(`${prefix}:events:{acme}`);
    expect((await readJobEvents(redis, prefix, 'acme', '0', 10)).map((e) => e.jobId)).toEqual(['a1', 'a2']);
    expect((await readJobEvents(redis, prefix, 'globex', '0', 10)).map((e) => e.jobId)).toEqual(['g1']);
    // A stream's key, not the entry, names the tenant.
    await redis.xadd(jobEventsKey(prefix, 'globex'), '*', 'job', 'x', 'event', JSON.stringify(event('x', 'queued', 'acme')));
    expect((await readJobEvents(redis, prefix, 'globex', '0', 10)).at(-1)).toMatchObject({ jobId: 'x', tenant: 'globex' });
  });

  it('skips entries it cannot read instead of failing the reader', async () => {
    const prefix = uniquePrefix();
    const key = jobEventsKey(prefix, 'acme');
    await redis.xadd(key, '*', 'event', '{not json');
    await redis.xadd(key, '*', 'event', JSON.stringify({ ...event('j1', 'queued'), type: 'teleported' }));
    await append(prefix, [event('j1', 'completed')]);
    expect((await readJobEvents(redis, prefix, 'acme', '0', 10)).map((e) => e.type)).toEqual(['completed']);
  });

  it('reads several tenants in one XREAD, each after its own id, blocking until something arrives', async () => {
    const prefix = uniquePrefix();
    await append(prefix, [event('a1', 'queued', 'acme'), event('g1', 'queued', 'globex')]);
    const [a1] = await readJobEvents(redis, prefix, 'acme', '0', 10);
    const read = await readJobEventsOfTenants(redis, prefix, new Map([['acme', a1!.id], ['globex', '0-0']]), { count: 10 });
    expect([...read.keys()]).toEqual(['globex']);
    expect(read.get('globex')!.map((e) => e.jobId)).toEqual(['g1']);

    const blocking = redis.duplicate();
    try {
      const pending = readJobEventsOfTenants(blocking, prefix, new Map([['acme', a1!.id]]), { count: 10, blockMs: 5_000 });
      await append(prefix, [event('a2', 'active', 'acme')]);
      const [a2] = (await pending).get('acme')!;
      expect(a2!.jobId).toBe('a2');
      expect((await readJobEventsOfTenants(blocking, prefix, new Map([['acme', a2!.id]]), { count: 10, blockMs: 10 })).size).toBe(0);
    } finally {
      blocking.disconnect();
    }
  });
});

describe('stream ids', () => {
  it('parses client ids into Redis\' full form and refuses anything else', () => {
    expect(parseStreamId('1700000000000-3')).toBe('1700000000000-3');
    expect(parseStreamId('1700000000000')).toBe('1700000000000-0');
    expect(parseStreamId('0')).toBe('0-0');
    expect(parseStreamId('18446744073709551615-18446744073709551615')).toBe('18446744073709551615-18446744073709551615');
    for (const bad of ['', '-', 'abc', '1-', '-1', '1-2-3', '1.5', ' 1', '$', '+', '18446744073709551616', '1-18446744073709551616', '1'.repeat(21)]) {
      expect(parseStreamId(bad), bad).toBeUndefined();
    }
  });

  it('orders ids numerically, not as text', () => {
    expect(compareStreamIds('9-0', '10-0')).toBeLessThan(0);
    expect(compareStreamIds('10-2', '10-10')).toBeLessThan(0);
    expect(compareStreamIds('10-1', '10-1')).toBe(0);
    expect(compareStreamIds('11-0', '10-99')).toBeGreaterThan(0);
  });
});
