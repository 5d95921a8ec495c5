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
