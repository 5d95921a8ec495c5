import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import { QueueName, createRedis, type Config, type Logger } from '@prompt-queue/shared';

/** How long close() lets BullMQ end the stream before ending its connection directly, ms. */
const CLOSE_TIMEOUT_MS = 1_000;

/**
 * Long-polling without polling: one BullMQ QueueEvents stream per process wakes the requests
 * waiting on a job. A waiter registers before the caller re-reads the job's state, so an event
 * that lands between the read and the wait is not lost.
 */
export class JobEvents {
  private readonly waiters = new Map<string, Set<() => void>>();
  private closing: Promise<void> | undefined;

  /**
   * @param connection the client QueueEvents actually reads on; `close` ends it even when Redis
   * never came up (BullMQ's own close would wait for a first `ready`).
   */
  constructor(
    private readonly events: QueueEvents,
    private readonly connection?: Redis,
  ) {
    const wake = ({ jobId }: { jobId: string }) => this.notify(jobId);
    events.on('completed', wake);
    events.on('failed', wake);
    events.on('removed', wake); // cancelled through another producer instance
  }

  /**
   * QueueEvents blocks on XREAD, so it gets its own connection (the `worker` role waits through
   * reconnects instead of failing).
   */
  static start(config: Config, logger: Logger): JobEvents {
    // BullMQ reads on a duplicate of the client it is given; keep a handle on that duplicate.
    const template = createRedis(config.redis.url, 'worker', 'pq-producer-events');
    template.on('error', () => undefined);
    let connection: Redis | undefined;
    const duplicate = template.duplicate.bind(template);
    template.duplicate = (override) => (connection = duplicate(override));
    const events = new QueueEvents(QueueName.Prompts, { connection: template, prefix: config.redis.prefix });
    template.disconnect();
    events.on('error', (error) => logger.debug('job events error', { error: error.message }));
    return new JobEvents(events, connection);
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Resolves once the event stream's connection is up. */
  async waitUntilReady(): Promise<void> {
    await this.events.waitUntilReady();
  }

  /** Wakes everyone waiting on `jobId` (also called directly after a local cancel). */
  notify(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const wake of set) wake();
  }

  /** Requests currently waiting on `jobId`; for tests and metrics. */
  waiting(jobId: string): number {
    return this.waiters.get(jobId)?.size ?? 0;
  }

  /**
   * Registers a waiter now. `wait` resolves on the job's next event, after `timeoutMs`, or when
   * `signal` aborts; `dispose` must be called in every case (it is idempotent).
   */
  subscribe(jobId: string): { wait(timeoutMs: number, signal?: AbortSignal): Promise<void>; dispose(): void } {
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    let set = this.waiters.get(jobId);
    if (!set) this.waiters.set(jobId, (set = new Set()));
    set.add(wake);
    if (this.closed) wake();

    const dispose = () => {
      const current = this.waiters.get(jobId);
      if (!current) return;
      current.delete(wake);
      if (current.size === 0) this.waiters.delete(jobId);
    };
    const wait = async (timeoutMs: number, signal?: AbortSignal) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => wake();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
    };
    return { wait, dispose };
  }

  /** Wakes every waiter (they answer with the state they read) and closes the stream. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const jobId of [...this.waiters.keys()]) this.notify(jobId);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.events.close().catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS))),
      ]);
      clearTimeout(timer);
      this.connection?.disconnect();
    })();
    return this.closing;
  }
}

/**
 * Reads a job until it is finished, `waitMs` passed, the client went away or the process is
 * shutting down, and returns the last read. `read` answering undefined (gone) ends the wait.
 */
export async function waitForJob<T>(options: {
  events: JobEvents;
  jobId: string;
  waitMs: number;
  signal: AbortSignal;
  read: () => Promise<T | undefined>;
  finished: (value: T) => boolean;
  initial: T;
}): Promise<T | undefined> {
  const { events, jobId, signal, read, finished } = options;
  const deadline = Date.now() + options.waitMs;
  let current: T | undefined = options.initial;
  while (current !== undefined && !finished(current) && !signal.aborted && !events.closed) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const subscription = events.subscribe(jobId);
    try {
      current = await read(); // after subscribing: a change from here on wakes us
      if (current === undefined || finished(current)) break;
      await subscription.wait(remaining, signal);
    } finally {
      subscription.dispose();
    }
    current = await read();
  }
  return current;
}
