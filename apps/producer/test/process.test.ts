// The producer as a real process, as scripts/start.mjs and the e2e tests run it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServiceProcess, startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';

const main = join(dirname(fileURLToPath(import.meta.url)), '../dist/main.js');
const env = (redisUrl: string) => ({
  NODE_ENV: 'test',
  REDIS_URL: redisUrl,
  REDIS_PREFIX: uniquePrefix('proc'),
  API_KEYS: 'acme:key-a',
  PRODUCER_PORT: '0',
  LOG_LEVEL: 'warn',
});

let server: TestRedis;
beforeAll(async () => {
  server = await startTestRedis();
});
afterAll(async () => {
  await server?.stop();
});

describe('producer process', () => {
  it('prints its URL, serves jobs, and exits 0 on SIGTERM', async () => {
    const producer = await startServiceProcess({ args: [main], env: env(server.url), readyLine: /producer listening on (http:\/\/\S+)/ });
    try {
      const api = producer.ready[1]!;
      const accepted = await fetch(`${api}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: 'Bearer key-a', 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hello' }),
      });
      expect(accepted.status).toBe(202);
      const { id } = (await accepted.json()) as { id: string };
      // A long-poll in flight (or still connecting) must not hold the shutdown up: it is answered
      // or refused, and the process exits well before the poll's 30 s.
      // The outcome is read after the shutdown; handle it now so a reset is not an unhandled rejection.
      const polling = fetch(`${api}/v1/jobs/${id}?wait=30`, { headers: { authorization: 'Bearer key-a' } })
        .then((response) => response.status)
        .catch(() => 'closed');
      const started = Date.now();
      const exit = await producer.stop('SIGTERM', 8_000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(Date.now() - started).toBeLessThan(5_000);
      const polled = await polling;
      expect([200, 'closed']).toContain(polled);
      expect(producer.output()).not.toContain('key-a');
    } finally {
      await producer.stop('SIGKILL');
    }
  });

  it('ends open event streams on SIGTERM instead of waiting for them', async () => {
    const producer = await startServiceProcess({ args: [main], env: env(server.url), readyLine: /producer listening on (http:\/\/\S+)/ });
    try {
      const api = producer.ready[1]!;
      const headers = { authorization: 'Bearer key-a' };
      const streams = await Promise.all([fetch(`${api}/v1/events`, { headers }), fetch(`${api}/v1/events?lastEventId=0`, { headers })]);
      expect(streams.map((response) => response.status)).toEqual([200, 200]);
      // Each body is read to its end: the server must end them.
      const drained = streams.map((response) => response.text().then(() => 'ended', () => 'closed'));
      const started = Date.now();
      expect(await producer.stop('SIGTERM', 8_000)).toEqual({ code: 0, signal: null });
      expect(Date.now() - started).toBeLessThan(3_000);
      for (const outcome of await Promise.all(drained)) expect(['ended', 'closed']).toContain(outcome);
    } finally {
      await producer.stop('SIGKILL');
    }
  });

  it('starts without Redis, answers /healthz and 503s, and exits 0 on SIGTERM', async () => {
    const producer = await startServiceProcess({
      args: [main],
      env: env('redis://127.0.0.1:1'),
      readyLine: /producer listening on (http:\/\/\S+)/,
    });
    try {
      const api = producer.ready[1]!;
      expect((await fetch(`${api}/healthz`)).status).toBe(200);
      expect((await fetch(`${api}/readyz`)).status).toBe(503);
      const post = await fetch(`${api}/v1/jobs`, {
        method: 'POST',
        headers: { authorization: 'Bearer key-a', 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'hello' }),
      });
      expect(post.status).toBe(503);
      expect(((await post.json()) as { error: { code: string } }).error.code).toBe('REDIS_UNAVAILABLE');
      expect(await producer.stop('SIGTERM', 8_000)).toEqual({ code: 0, signal: null });
    } finally {
      await producer.stop('SIGKILL');
    }
  });

  it('refuses to start in production without API_KEYS, naming the variable', async () => {
    const start = startServiceProcess({
      args: [main],
      env: { ...env(server.url), NODE_ENV: 'production', API_KEYS: undefined },
      readyLine: /producer listening on (http:\/\/\S+)/,
    });
    await expect(start).rejects.toThrow(/exited \(1\)[\s\S]*API_KEYS: required in production/);
  });

  it('refuses a typo in CONFIG_FILE: exit 1 and one line naming the key and the closest valid one', async () => {
    // `tenants.acme.dailyUSD` used to start acme with no spending cap while the log listed it as budgeted.
    const dir = mkdtempSync(join(tmpdir(), 'pq-producer-config-'));
    try {
      const file = join(dir, 'config.yaml');
      writeFileSync(file, 'tenants:\n  acme:\n    dailyUSD: 5\n');
      const start = startServiceProcess({ args: [main], env: { ...env(server.url), CONFIG_FILE: file }, readyLine: /producer listening on/ });
      await expect(start).rejects.toThrow(
        /exited \(1\) before it was ready:\nInvalid configuration: CONFIG_FILE tenants\.acme\.dailyUSD: unknown key, did you mean dailyUsd\?\n$/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses two tenants with the same API key, naming both and not the key', async () => {
    const start = startServiceProcess({
      args: [main],
      env: { ...env(server.url), API_KEYS: 'acme:shared-key-0123456789,globex:shared-key-0123456789' },
      readyLine: /producer listening on/,
    });
    const error = await start.then(
      () => new Error('started'),
      (reason: Error) => reason,
    );
    expect(error.message).toMatch(/exited \(1\)[\s\S]*API_KEYS \(producer\.apiKeys\): tenants "acme" and "globex" have the same API key/);
    expect(error.message).not.toContain('shared-key-0123456789');
  });
});
