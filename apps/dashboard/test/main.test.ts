import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServiceProcess, startTestRedis, uniquePrefix, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

// main.ts runs as a real process, from the build output (`npm run build` first; turbo's test task does).
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const READY = /dashboard listening on (http:\/\/\S+)/;
/** Long enough for production (at least 12 characters). */
const PASSWORD = 'correct-horse-battery';

let redis: TestRedis;
const running: ServiceProcess[] = [];

beforeAll(async () => {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build the dashboard first`);
  redis = await startTestRedis();
});

afterEach(async () => {
  for (const proc of running.splice(0)) await proc.stop('SIGKILL');
});

afterAll(async () => {
  await redis?.stop();
});

/** The environment of a dashboard process, with nothing inherited that could change the outcome. */
function env(extra: Record<string, string | undefined>): Record<string, string | undefined> {
  return {
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('dashmain'),
    DASHBOARD_PORT: '0',
    DASHBOARD_USER: undefined,
    DASHBOARD_PASSWORD: undefined,
    DASHBOARD_TOKEN: undefined,
    DASHBOARD_READ_ONLY: undefined,
    API_KEYS: undefined,
    CONFIG_FILE: undefined,
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

describe('dashboard main', () => {
  it('refuses to start in production without credentials, exit 1 with a message', async () => {
    const start = startServiceProcess({ args: [MAIN], env: env({ NODE_ENV: 'production' }), readyLine: READY });
    await expect(start).rejects.toThrow(/exited \(1\)[\s\S]*DASHBOARD_USER and DASHBOARD_PASSWORD/);
  });

  it('refuses a password shorter than 12 characters in production, exit 1 with one line', async () => {
    const start = startServiceProcess({
      args: [MAIN],
      env: env({ NODE_ENV: 'production', DASHBOARD_USER: 'admin', DASHBOARD_PASSWORD: 'secret' }),
      readyLine: READY,
    });
    await expect(start).rejects.toThrow(
      /exited \(1\) before it was ready:\nInvalid configuration: DASHBOARD_PASSWORD \(dashboard\.password\): in production the dashboard password needs at least 12 characters\n$/,
    );
  });

  it('starts with credentials on a free port, serves, and exits 0 on SIGTERM', async () => {
    const proc = await startServiceProcess({
      args: [MAIN],
      env: env({ NODE_ENV: 'production', DASHBOARD_USER: 'admin', DASHBOARD_PASSWORD: PASSWORD }),
      readyLine: READY,
    });
    running.push(proc);
    const base = proc.ready[1]!;
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(base).not.toMatch(/:0$/);

    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/queues`)).status).toBe(401);
    const authorized = await fetch(`${base}/queues/api/queues`, {
      headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` },
    });
    expect(authorized.status).toBe(200);

    expect(await proc.stop('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('in development without credentials, generates a password, prints it once, and requires it', async () => {
    const proc = await startServiceProcess({ args: [MAIN], env: env({ NODE_ENV: 'development' }), readyLine: READY });
    running.push(proc);
    const base = proc.ready[1]!;
    const printed = /dashboard credentials \(generated for this run[^)]*\): user (\S+) password (\S+)/.exec(proc.output());
    expect(printed, proc.output()).not.toBeNull();
    const [, user, password] = printed!;
    expect(user).toBe('admin');
    expect(password!.length).toBeGreaterThanOrEqual(20);
    expect(proc.output().split(password!).length - 1).toBe(1);

    expect((await fetch(`${base}/queues/api/queues`)).status).toBe(401);
    expect((await fetch(`${base}/`)).status).toBe(401);
    const authorized = await fetch(`${base}/api/overview`, {
      headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
    });
    expect(authorized.status).toBe(200);
    expect(await proc.stop('SIGINT')).toEqual({ code: 0, signal: null });
  });

  it('accepts DASHBOARD_TOKEN alone, in production too', async () => {
    const token = 'production-dashboard-token-1234';
    const proc = await startServiceProcess({ args: [MAIN], env: env({ NODE_ENV: 'production', DASHBOARD_TOKEN: token }), readyLine: READY });
    running.push(proc);
    const base = proc.ready[1]!;
    expect(proc.output()).not.toMatch(/generated/);
    expect((await fetch(`${base}/api/overview`)).status).toBe(401);
    expect((await fetch(`${base}/api/overview`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});
