import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pq-webhook-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function messageOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('did not throw');
}

describe('webhook configuration', () => {
  it('reads tenant secrets from secretEnv (comma-separated, for rotation) and secretFile, once', () => {
    const secrets = file('secrets.txt', '# acme rotation\nfile-secret-0123456789\n');
    const configFile = file(
      'config.yaml',
      `tenants:\n  acme:\n    webhook: { url: https://hooks.acme.test/pq, secretEnv: ACME_WEBHOOK_SECRET }\n  beta:\n    dailyUsd: 5\n    webhook: { secretFile: ${secrets} }\nwebhooks:\n  allowPrivate: ["127.0.0.1/32", receiver.internal]\n`,
    );
    const config = loadConfig({ CONFIG_FILE: configFile, ACME_WEBHOOK_SECRET: 'old-secret-0123456789, new-secret-0123456789', WEBHOOK_ATTEMPTS: '3' });
    expect(config.tenants.acme!.webhook).toEqual({ url: 'https://hooks.acme.test/pq', secretEnv: 'ACME_WEBHOOK_SECRET', secrets: ['old-secret-0123456789', 'new-secret-0123456789'] });
    expect(config.tenants.beta!.webhook!.secrets).toEqual(['file-secret-0123456789']);
    expect(config.webhooks).toMatchObject({ allowPrivate: ['127.0.0.1/32', 'receiver.internal'], attempts: 3, backoffBaseMs: 30_000, backoffMaxMs: 14_400_000 });
  });

  it('refuses a webhook without a secret reference, an unset variable, a short secret, a secret in the file and a bad URL', () => {
    const config = (yaml: string, env: Record<string, string> = {}) => messageOf(() => loadConfig({ CONFIG_FILE: file(`c${Math.random()}.yaml`, yaml), ...env }));
    expect(config('tenants:\n  acme:\n    webhook: { url: "https://x.test/" }\n')).toMatch(/exactly one of secretEnv or secretFile/);
    expect(config('tenants:\n  acme:\n    webhook: { secretEnv: NOPE }\n')).toMatch(/tenants\.acme\.webhook\.secretEnv: NOPE is not set/);
    const short = config('tenants:\n  acme:\n    webhook: { secretEnv: S }\n', { S: 'short' });
    expect(short).toMatch(/a secret of 5 characters/);
    expect(short).not.toContain('short,');
    expect(config('tenants:\n  acme:\n    webhook: { secretEnv: S, secrets: [abc] }\n', { S: 'x'.repeat(20) })).toMatch(/secrets: unknown key/);
    expect(config('tenants:\n  acme:\n    webhook: { url: "ftp://x.test/", secretEnv: S }\n', { S: 'x'.repeat(20) })).toMatch(/http:\/\/ or https:\/\//);
    expect(config('webhooks:\n  allowPrivate: ["10.0.0.0/33"]\n')).toMatch(/webhooks\.allowPrivate\.0/);
  });
});
