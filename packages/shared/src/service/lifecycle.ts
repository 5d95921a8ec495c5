import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import type { Logger } from '../logging/logger.js';

/** Listens on `port` (0: any free port) and resolves with the port actually bound. */
export function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** QUIT when Redis answers (bounded to 1 s), then drop the socket: shutdown never hangs on Redis. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
  }
  client.disconnect();
}

/** ioredis reports every failed reconnect; log the outage once and its end once. */
export function logConnectionState(client: Redis, log: Logger): void {
  let down = false;
  client.on('error', (error: Error) => {
    if (down) return;
    down = true;
    log.warn('Redis connection lost; reconnecting in the background', { error: error.message });
  });
  client.on('ready', () => {
    if (down) log.info('Redis connection restored');
    down = false;
  });
}

/**
 * Stop signals closer than this to the first one are the same stop request, ms. A terminal's
 * Ctrl-C reaches every process of its foreground group, and a supervisor (`npm start`, npm itself)
 * may forward its own SIGINT or SIGTERM on top: a service would otherwise see one Ctrl-C as two.
 */
export const SAME_STOP_REQUEST_MS = 1_000;

export interface StopSignalOptions {
  /** The first stop signal: stop gracefully (finish in-flight work). */
  stop(signal: NodeJS.Signals): void;
  /** A stop signal `sameRequestMs` or more after the first: the operator insists, exit now. */
  force(signal: NodeJS.Signals): void;
  /** A stop signal taken as part of the first request (sent within `sameRequestMs`). */
  repeated?(signal: NodeJS.Signals, sinceFirstMs: number): void;
  /** @defaultValue {@link SAME_STOP_REQUEST_MS} */
  sameRequestMs?: number;
  /** @defaultValue `['SIGTERM', 'SIGINT']` */
  signals?: NodeJS.Signals[];
  /** Where the signals arrive. @defaultValue `process` */
  target?: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  /** @defaultValue `Date.now` */
  now?(): number;
}

/**
 * SIGTERM and SIGINT handling for a service that drains on stop: the first signal stops
 * gracefully; signals within `sameRequestMs` of it are the same request (SIGINT from the terminal
 * and SIGTERM from a supervisor arriving together); a later one forces the exit. Returns a
 * function that removes the listeners.
 */
export function onStopSignals(options: StopSignalOptions): () => void {
  const target = options.target ?? process;
  const now = options.now ?? Date.now;
  const sameRequestMs = options.sameRequestMs ?? SAME_STOP_REQUEST_MS;
  let firstAt: number | undefined;
  const listener = (signal: NodeJS.Signals): void => {
    if (firstAt === undefined) {
      firstAt = now();
      options.stop(signal);
      return;
    }
    const since = now() - firstAt;
    if (since < sameRequestMs) options.repeated?.(signal, since);
    else options.force(signal);
  };
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  for (const signal of signals) target.on(signal, listener);
  return () => {
    for (const signal of signals) target.off(signal, listener);
  };
}
