import { spawnSync } from 'node:child_process';
import { GoogleGenerativeAI } from '@google/generative-ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mainScriptPath, startEmulatorProcess, type EmulatorProcess } from '../src/index.js';
import { detail, fetchError } from './helpers.js';

describe('emulator as a separate process', () => {
  let emu: EmulatorProcess;
  beforeAll(async () => {
    emu = await startEmulatorProcess({ apiKeys: ['proc-key'], quotas: { 'gemini-2.5-flash': { rpm: 1 } } });
  });
  afterAll(() => emu.stop());

  it('serves the real SDK and its control API', async () => {
    expect(emu.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const model = new GoogleGenerativeAI(emu.apiKey).getGenerativeModel({ model: 'gemini-2.5-flash' }, { baseUrl: emu.url });
    const r = await model.generateContent('hello from another process');
    expect(r.response.text()).toContain('Emulated answer from gemini-2.5-flash');
    const err = await fetchError(() => model.generateContent('again'));
    expect(err.status).toBe(429);
    expect(detail(err, 'RetryInfo')?.retryDelay).toMatch(/^\d+s$/);
    const counters = await emu.client.counters();
    expect(counters.byModel['gemini-2.5-flash']).toMatchObject({ calls: 2, successes: 1, quota429: 1 });
  });

  it('stop() ends the process with SIGTERM', async () => {
    const other = await startEmulatorProcess();
    await other.stop();
    await expect(fetch(`${other.url}/_emulator/healthz`)).rejects.toThrow();
  });

  it('the CLI rejects bad env naming the variable', () => {
    const r = spawnSync(process.execPath, [mainScriptPath()], { env: { ...process.env, EMULATOR_PORT: 'abc' }, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('EMULATOR_PORT');
    const q = spawnSync(process.execPath, [mainScriptPath()], { env: { ...process.env, EMULATOR_PORT: '0', EMULATOR_QUOTAS: '{"m":{"rpm":-1}}' }, encoding: 'utf8' });
    expect(q.status).toBe(1);
    expect(q.stderr).toContain('EMULATOR_QUOTAS');
  });

  it('startEmulatorProcess rejects with stderr when the child fails', async () => {
    await expect(startEmulatorProcess({ env: { EMULATOR_LATENCY_MS: 'slow' } })).rejects.toThrow(/EMULATOR_LATENCY_MS/);
  });
});
