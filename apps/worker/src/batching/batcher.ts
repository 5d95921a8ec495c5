/**
 * Adaptive micro-batching, per route (e.g. `generate:gemini-3.6-flash`).
 *
 * Every BullMQ job keeps its own processor call (so BullMQ still renews its lock, and records its
 * result, retry or failure); that call hands the job to `submit` and awaits its own promise, while
 * the batcher serves jobs of one route together. The rule is group commit, not a fixed timer:
 * - a route with no batch in flight flushes at once: a lone job on an idle queue waits for nothing;
 * - while a batch of the route is in flight, new jobs gather until `size` of them are pending or
 *   the first of them has waited `maxWaitMs`, and the route also flushes as soon as it goes idle.
 * So batches grow only under load, and a batch never waits for one that is in flight.
 *
 * An item submitted with a signal leaves its route when the signal aborts before its batch goes
 * out, and rejects with a {@link WithdrawnError}: it was not served (a shutdown hands it back).
 *
 * A batch may settle an item before the others (`dispatch`'s `settleEarly`): its submitter resumes
 * at once, and the batch's final outcome for that item is ignored. Slow calls of one batch end at
 * different times (2 s ± 1 s each: the slowest of 16 near 2.9 s), and an item released only with
 * the slowest would hold its job, and its slot of the worker's concurrency, for nothing.
 */

export type Outcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface BatcherOptions<T, R> {
  /** Most items in one batch. */
  size: number;
  /** Longest an item waits for its batch to fill while the route is busy, ms. */
  maxWaitMs: number;
  /**
   * Serves one batch: one outcome per item, in order. A rejection fails every item of the batch
   * not yet settled early. `settleEarly(index, outcome)` settles one item before the batch ends.
   */
  dispatch(route: string, items: T[], settleEarly: (index: number, outcome: Outcome<R>) => void): Promise<Outcome<R>[]>;
  /** Observes each batch as it is dispatched (stats). */
  onBatch?(route: string, size: number): void;
}

interface Waiter<T, R> {
  item: T;
  resolve(value: R): void;
  reject(error: unknown): void;
  /** Unhooks the item's abort listener once it leaves the pending list. */
  detach(): void;
}

/** An item whose signal aborted while it was still gathering: it never reached `dispatch`. */
export class WithdrawnError extends Error {
  override readonly name = 'WithdrawnError';

  /** The signal's abort reason. */
  constructor(readonly reason: unknown) {
    super('withdrawn from its batch before dispatch');
  }
}

interface RouteState<T, R> {
  pending: Waiter<T, R>[];
  inFlight: number;
  timer: NodeJS.Timeout | undefined;
}

export class Batcher<T, R> {
  private readonly routes = new Map<string, RouteState<T, R>>();

  constructor(private readonly options: BatcherOptions<T, R>) {
    if (!(Number.isInteger(options.size) && options.size > 0)) throw new RangeError('size must be a positive integer');
    if (!(options.maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be ≥ 0');
  }

  /**
   * Adds an item to its route's next batch; settles with that item's own outcome. With `signal`,
   * an abort before the batch goes out withdraws the item (rejects with {@link WithdrawnError}).
   */
  submit(route: string, item: T, signal?: AbortSignal): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (signal?.aborted) return reject(new WithdrawnError(signal.reason));
      const state = this.route(route);
      const onAbort = (): void => {
        const index = state.pending.indexOf(waiter);
        if (index < 0) return;
        state.pending.splice(index, 1);
        if (state.pending.length === 0) {
          clearTimeout(state.timer);
          state.timer = undefined;
          if (state.inFlight === 0 && this.routes.get(route) === state) this.routes.delete(route);
        }
        reject(new WithdrawnError(signal!.reason));
      };
      const waiter: Waiter<T, R> = { item, resolve, reject, detach: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      state.pending.push(waiter);
      if (state.pending.length >= this.options.size || state.inFlight === 0) this.flush(route, state);
      else state.timer ??= setTimeout(() => this.flush(route, state), this.options.maxWaitMs);
    });
  }

  /** Items waiting for a batch, and batches in flight, over all routes. */
  get load(): { pendingItems: number; batchesInFlight: number } {
    let pendingItems = 0;
    let batchesInFlight = 0;
    for (const state of this.routes.values()) {
      pendingItems += state.pending.length;
      batchesInFlight += state.inFlight;
    }
    return { pendingItems, batchesInFlight };
  }

  private route(route: string): RouteState<T, R> {
    let state = this.routes.get(route);
    if (!state) {
      state = { pending: [], inFlight: 0, timer: undefined };
      this.routes.set(route, state);
    }
    return state;
  }

  private flush(route: string, state: RouteState<T, R>): void {
    clearTimeout(state.timer);
    state.timer = undefined;
    const batch = state.pending.splice(0, this.options.size);
    if (batch.length === 0) return;
    for (const waiter of batch) waiter.detach();
    // What is left waits for the next flush: at once if already full, else up to maxWaitMs.
    if (state.pending.length >= this.options.size) queueMicrotask(() => this.flush(route, state));
    else if (state.pending.length > 0) state.timer = setTimeout(() => this.flush(route, state), this.options.maxWaitMs);

    state.inFlight += 1;
    this.options.onBatch?.(route, batch.length);
    void this.run(route, batch).finally(() => {
      state.inFlight -= 1;
      if (state.inFlight === 0 && state.pending.length > 0) this.flush(route, state);
      else if (state.inFlight === 0 && state.pending.length === 0 && this.routes.get(route) === state) this.routes.delete(route);
    });
  }

  private async run(route: string, batch: Waiter<T, R>[]): Promise<void> {
    const settled = new Array<boolean>(batch.length).fill(false);
    const settle = (i: number, outcome: Outcome<R> | undefined): void => {
      const waiter = batch[i];
      if (!waiter || settled[i]) return;
      settled[i] = true;
      if (!outcome) waiter.reject(new Error(`batch dispatch returned no outcome for item ${i} of ${batch.length}`));
      else if (outcome.ok) waiter.resolve(outcome.value);
      else waiter.reject(outcome.error);
    };
    let outcomes: Outcome<R>[];
    try {
      outcomes = await this.options.dispatch(
        route,
        batch.map((waiter) => waiter.item),
        settle,
      );
    } catch (error) {
      batch.forEach((_, i) => settle(i, { ok: false, error }));
      return;
    }
    batch.forEach((_, i) => settle(i, outcomes[i]));
  }
}
