import { isRedisConnectionError } from '@prompt-queue/shared';
import type { Redis } from 'ioredis';

/** What the dashboard knows about its Redis: up, or unavailable since when and why. */
export type RedisHealthState = { status: 'up' } | { status: 'unavailable'; since: number; reason: string };

/**
 * Since when the dashboard's Redis has been unavailable, so a page can say "Redis unavailable
 * since 14:02:11" instead of hanging or showing zeros. Down: the connection closed or failed, or
 * a read timed out or lost its connection (`failed`); up again once the connection is ready and a
 * read succeeds (`succeeded`), or on a fresh `ready`. Kept in memory: it is this process's view.
 */
export class RedisHealth {
  private downSince: number | undefined;
  private reason = '';
  private everReady: boolean;

  constructor(
    private readonly connection: Redis,
    private readonly now: () => number = Date.now,
  ) {
    this.everReady = connection.status === 'ready';
    connection.on('error', (error: Error) => this.down(error.message));
    connection.on('close', () => this.down('connection closed'));
    connection.on('ready', () => {
      this.everReady = true;
      this.downSince = undefined;
    });
  }

  /** Whether reads may be tried now: the connection is up (a fail-fast connection would refuse them). */
  get connected(): boolean {
    return this.connection.status === 'ready';
  }

  /**
   * Whether reads may be tried. Right after start, waits up to `timeoutMs` for the first
   * connection (a page opened as the dashboard starts should not say "unavailable"); once Redis
   * has been up, answers at once: during an outage nothing waits.
   */
  async connectedWithin(timeoutMs: number): Promise<boolean> {
    if (this.connected || this.everReady || this.downSince !== undefined) return this.connected;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.connection.off('ready', done);
        this.connection.off('error', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.connection.once('ready', done);
      this.connection.once('error', done);
    });
    return this.connected;
  }

  get state(): RedisHealthState {
    // Not connected without an event we saw (still connecting, or closed before we listened): down from now.
    if (this.downSince === undefined && !this.connected) this.down(`connection ${this.connection.status}`);
    return this.downSince === undefined ? { status: 'up' } : { status: 'unavailable', since: this.downSince, reason: this.reason };
  }

  /**
   * A read failed. Returns whether the failure was about Redis (a timeout, the connection), which
   * makes it unavailable from now; an error about the data (WRONGTYPE) changes nothing.
   */
  failed(error: unknown): boolean {
    if (!isRedisConnectionError(error)) return false;
    this.down(error instanceof Error ? error.message : String(error));
    return true;
  }

  /** A read answered: Redis is back, if the connection is too. */
  succeeded(): void {
    if (this.connected) this.downSince = undefined;
  }

  private down(reason: string): void {
    this.downSince ??= this.now();
    this.reason = reason;
  }
}
