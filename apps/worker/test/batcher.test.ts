import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Batcher, WithdrawnError, type Outcome } from '../src/batching/batcher.js';

/** A dispatch whose batches stay in flight until the test finishes them. */
function harness(size = 4, maxWaitMs = 20) {
  const batches: { route: string; items: number[]; finish(): void }[] = [];
  const batcher = new Batcher<number, string>({
    size,
    maxWaitMs,
    dispatch: (route, items) =>
      new Promise<Outcome<string>[]>((resolve) => {
        batches.push({
          route,
          items,
          finish: () => resolve(items.map((item) => (item < 0 ? { ok: false, error: new Error(`bad ${item}`) } : { ok: true, value: `done ${item}` }))),
        });
      }),
  });
  return { batcher, batches };
}

describe('Batcher (adaptive micro-batches, fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a lone job on an idle route goes out at once, alone', async () => {
    const { batcher, batches } = harness();
    const result = batcher.submit('a', 1);
    expect(batches.map((b) => b.items)).toEqual([[1]]);
    batches[0]!.finish();
    await expect(result).resolves.toBe('done 1');
  });

  it('while a batch is in flight, jobs gather until maxWaitMs', async () => {
    const { batcher, batches } = harness(4, 20);
    void batcher.submit('a', 1);
    const later = [batcher.submit('a', 2), batcher.submit('a', 3)];
    expect(batches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(19);
    expect(batches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches.map((b) => b.items)).toEqual([[1], [2, 3]]);
    batches[1]!.finish();
    await expect(Promise.all(later)).resolves.toEqual(['done 2', 'done 3']);
  });

  it('flushes as soon as `size` jobs are pending, without waiting', async () => {
    const { batcher, batches } = harness(3, 1_000);
    void batcher.submit('a', 0);
    for (let i = 1; i <= 7; i++) void batcher.submit('a', i);
    expect(batches.map((b) => b.items)).toEqual([[0], [1, 2, 3], [4, 5, 6]]);
    // The 7th waits for more company, up to maxWaitMs.
    await vi.advanceTimersByTimeAsync(999);
    expect(batches).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(batches.at(-1)!.items).toEqual([7]);
  });

  it('flushes what gathered as soon as the route goes idle (before maxWaitMs)', async () => {
    const { batcher, batches } = harness(10, 1_000);
    void batcher.submit('a', 1);
    void batcher.submit('a', 2);
    void batcher.submit('a', 3);
    expect(batches).toHaveLength(1);
    batches[0]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(batches.map((b) => b.items)).toEqual([[1], [2, 3]]);
  });

  it('routes batch independently: a busy route never delays an idle one', () => {
    const { batcher, batches } = harness();
    void batcher.submit('a', 1);
    void batcher.submit('a', 2);
    void batcher.submit('b', 3);
    expect(batches.map((b) => [b.route, b.items])).toEqual([
      ['a', [1]],
      ['b', [3]],
    ]);
  });

  it('settles every job with its own outcome; a failed dispatch fails the whole batch', async () => {
    const { batcher, batches } = harness(2, 5);
    void batcher.submit('a', 0);
    const ok = batcher.submit('a', 1);
    const bad = batcher.submit('a', -1);
    expect(batches[1]!.items).toEqual([1, -1]);
    batches[1]!.finish();
    await expect(ok).resolves.toBe('done 1');
    await expect(bad).rejects.toThrow('bad -1');

    const broken = new Batcher<number, string>({ size: 2, maxWaitMs: 5, dispatch: () => Promise.reject(new Error('redis down')) });
    await expect(broken.submit('a', 1)).rejects.toThrow('redis down');
  });

  it('an item whose signal aborts while it gathers is withdrawn: never dispatched, rejects with the reason', async () => {
    const { batcher, batches } = harness(4, 20);
    void batcher.submit('a', 1);
    const controller = new AbortController();
    const withdrawn = batcher.submit('a', 2, controller.signal);
    const stays = batcher.submit('a', 3, new AbortController().signal);
    controller.abort('worker-shutdown');
    const error = await withdrawn.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WithdrawnError);
    expect((error as WithdrawnError).reason).toBe('worker-shutdown');
    expect(batcher.load.pendingItems).toBe(1);
    await vi.advanceTimersByTimeAsync(20);
    expect(batches.map((b) => b.items)).toEqual([[1], [3]]);
    batches[1]!.finish();
    await expect(stays).resolves.toBe('done 3');
    // Aborted before it was submitted: rejected at once. Aborted after dispatch: the batch decides.
    await expect(batcher.submit('a', 4, AbortSignal.abort('late'))).rejects.toBeInstanceOf(WithdrawnError);
    const sent = new AbortController();
    const inFlight = batcher.submit('b', 5, sent.signal);
    sent.abort('after dispatch');
    batches.at(-1)!.finish();
    await expect(inFlight).resolves.toBe('done 5');
  });

  it('the last item of a route withdrawn leaves no timer and no route behind', async () => {
    const { batcher, batches } = harness(4, 20);
    void batcher.submit('a', 1);
    const controller = new AbortController();
    void batcher.submit('a', 2, controller.signal).catch(() => {});
    controller.abort();
    batches[0]!.finish();
    await vi.advanceTimersByTimeAsync(100);
    expect(batches).toHaveLength(1);
    expect(batcher.load).toEqual({ pendingItems: 0, batchesInFlight: 0 });
    expect(vi.getTimerCount()).toBe(0);
  });

  it('an item settled early resumes at once; the later batch outcome for it is ignored, and a failed batch fails only the rest', async () => {
    const sent: { early(index: number, outcome: Outcome<string>): void; finish(outcomes: Outcome<string>[]): void; fail(error: Error): void }[] = [];
    const batcher = new Batcher<number, string>({
      size: 4,
      maxWaitMs: 5,
      dispatch: (_route, _items, early) => new Promise<Outcome<string>[]>((finish, fail) => void sent.push({ early, finish, fail })),
    });
    const first = batcher.submit('a', 1);
    sent[0]!.early(0, { ok: true, value: 'early 1' });
    await expect(first).resolves.toBe('early 1');
    sent[0]!.finish([{ ok: true, value: 'late 1' }]);

    // Route b: one alone (idle route), then two gathered into one batch while it is in flight.
    const lone = batcher.submit('b', 2);
    const [a, b] = [batcher.submit('b', 3), batcher.submit('b', 4)];
    await vi.advanceTimersByTimeAsync(5);
    expect(sent).toHaveLength(3);
    sent[2]!.early(1, { ok: false, error: new Error('bad 4') });
    await expect(b).rejects.toThrow('bad 4');
    sent[2]!.fail(new Error('redis down'));
    await expect(a).rejects.toThrow('redis down');
    sent[1]!.early(0, { ok: true, value: 'early 2' });
    sent[1]!.fail(new Error('redis down'));
    await expect(lone).resolves.toBe('early 2');
    await vi.advanceTimersByTimeAsync(0);
    expect(batcher.load).toEqual({ pendingItems: 0, batchesInFlight: 0 });
  });
});
