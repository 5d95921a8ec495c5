import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { GoogleGenerativeAI, GoogleGenerativeAIFetchError } from '@google/generative-ai';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ProviderError, createLogger, type Logger } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { KeyRing, fingerprint, parseKeyFile, rejectionReason, type KeyRejectedEvent } from '../src/providers/gemini/key-ring.js';
import { MODEL } from './helpers.js';

// Realistic-looking keys: the logger's AIza… pattern would hide them anyway, so the leak check
// below also uses keys it would NOT catch.
const KEY_A = 'key-alpha-0123456789';
const KEY_B = 'key-bravo-0123456789';
const KEY_C = 'key-charlie-0123456789';

/** The shared logger's format (redaction, JSON) writing into a buffer we can grep. */
function capturedLogger(): { logger: Logger; text: () => string } {
  const logger = createLogger({ service: 'worker-test', level: 'debug', json: true });
  const stream = new PassThrough();
  let captured = '';
  stream.on('data', (chunk: Buffer) => (captured += chunk.toString('utf8')));
  logger.clear();
  logger.add(new winston.transports.Stream({ stream }));
  return { logger, text: () => captured };
}

describe('KeyRing', () => {
  let dir: string;
  let file: string;
  let rings: KeyRing[];
  let logs: ReturnType<typeof capturedLogger>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pq-keys-'));
    file = join(dir, 'gemini-keys.txt');
    rings = [];
    logs = capturedLogger();
  });
  afterEach(() => {
    for (const ring of rings) ring.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function ring(options: { keys?: string[]; file?: string; onRejected?: (event: KeyRejectedEvent) => void } = {}): KeyRing {
    const created = new KeyRing({ ...options, logger: logs.logger, debounceMs: 20, pollIntervalMs: 100 });
    rings.push(created);
    return created;
  }

  const order = (keyRing: KeyRing, count: number): (string | undefined)[] => Array.from({ length: count }, () => keyRing.next()?.key);

  it('fingerprints a key as the first 8 hex of its sha256', () => {
    expect(fingerprint('abc')).toBe('ba7816bf'); // sha256("abc") = ba7816bf8f01cfea…
    expect(fingerprint(KEY_A)).toMatch(/^[0-9a-f]{8}$/);
  });

  it('parses a key file: one key per line, comments and blank lines skipped', () => {
    expect(parseKeyFile(`# production keys\n${KEY_A}\n\n  ${KEY_B}  # project two\r\n#${KEY_C}\n`)).toEqual([KEY_A, KEY_B]);
  });

  it('rotates round-robin over the list then the file, each key once', () => {
    writeFileSync(file, `${KEY_B}\n${KEY_C}\n${KEY_A}\n`);
    const keyRing = ring({ keys: [KEY_A], file });
    expect(keyRing.size).toBe(3);
    expect(order(keyRing, 7)).toEqual([KEY_A, KEY_B, KEY_C, KEY_A, KEY_B, KEY_C, KEY_A]);
    expect(keyRing.next()?.fingerprint).toBe(fingerprint(KEY_B));
  });

  it('reject takes a key out and reports it by fingerprint only, once', () => {
    const events: KeyRejectedEvent[] = [];
    const keyRing = ring({ keys: [KEY_A, KEY_B, KEY_C], onRejected: (event) => events.push(event) });
    expect(keyRing.reject(KEY_B, 'API_KEY_INVALID')).toBe(true);
    expect(keyRing.reject(KEY_B, 'API_KEY_INVALID')).toBe(false); // a concurrent call with the same key
    expect(keyRing.reject('never-listed', 'PERMISSION_DENIED')).toBe(false);
    expect(order(keyRing, 4)).toEqual([KEY_A, KEY_C, KEY_A, KEY_C]);
    expect(events).toEqual([{ fingerprint: fingerprint(KEY_B), reason: 'API_KEY_INVALID', remaining: 2 }]);
    expect(keyRing.describe()).toEqual({
      healthy: [fingerprint(KEY_A), fingerprint(KEY_C)],
      rejected: [{ fingerprint: fingerprint(KEY_B), reason: 'API_KEY_INVALID' }],
    });

    const text = logs.text();
    expect(text).toContain(fingerprint(KEY_B));
    expect(text).toContain('API_KEY_INVALID');
    for (const key of [KEY_A, KEY_B, KEY_C]) expect(text).not.toContain(key);
  });

  it('next() is undefined once every key is rejected (the caller fails with PROVIDER_AUTH_FAILED)', () => {
    const keyRing = ring({ keys: [KEY_A, KEY_B] });
    keyRing.reject(KEY_A, 'API_KEY_INVALID');
    keyRing.reject(KEY_B, 'PERMISSION_DENIED');
    expect(keyRing.next()).toBeUndefined();
    expect(keyRing.size).toBe(0);
    expect(logs.text()).toContain('no usable Gemini API key left');
    expect(logs.text()).not.toContain(KEY_A);
  });

  it('acquire(signal): a call waiting for a new key\'s probe leaves at once when its signal aborts', async () => {
    const keyRing = ring({ keys: [KEY_A] });
    const probe = await keyRing.acquire();
    expect(probe?.key).toBe(KEY_A);
    const controller = new AbortController();
    const waiting = keyRing.acquire(controller.signal);
    const other = keyRing.acquire();
    controller.abort('worker-shutdown');
    await expect(waiting).rejects.toBe('worker-shutdown');
    // The aborted waiter is gone; the other still gets the key once the probe proves it.
    keyRing.succeeded(KEY_A);
    await expect(other).resolves.toMatchObject({ key: KEY_A });
    // Already aborted: no key is taken (no probe is started for a call that will not be made).
    await expect(keyRing.acquire(AbortSignal.abort('gone'))).rejects.toBe('gone');
  });

  it('reload() re-reads the file and puts listed keys back, rejected ones included', () => {
    writeFileSync(file, `${KEY_A}\n${KEY_B}\n`);
    const keyRing = ring({ file });
    keyRing.reject(KEY_A, 'PERMISSION_DENIED');
    writeFileSync(file, `${KEY_A}\n${KEY_C}\n`);
    const result = keyRing.reload();
    expect(result).toEqual({ keys: 2, added: [fingerprint(KEY_C)], removed: [fingerprint(KEY_B)], restored: [fingerprint(KEY_A)] });
    expect(order(keyRing, 2)).toEqual([KEY_A, KEY_C]);
    for (const key of [KEY_A, KEY_B, KEY_C]) expect(logs.text()).not.toContain(key);
  });

  it('a reload that finds no key, or no file, keeps the current keys', () => {
    writeFileSync(file, `${KEY_A}\n`);
    const keyRing = ring({ file });
    writeFileSync(file, '# emptied by mistake\n');
    expect(() => keyRing.reload()).toThrow(/lists no key/);
    rmSync(file);
    expect(() => keyRing.reload()).toThrow(/cannot read/);
    expect(order(keyRing, 2)).toEqual([KEY_A, KEY_A]);
  });

  it('fails fast at start when the key file cannot be read', () => {
    expect(() => ring({ file: join(dir, 'missing.txt') })).toThrow(/GEMINI_API_KEY_FILE: cannot read/);
  });

  it('watch() reloads when the file changes, also through an atomic rename', async () => {
    writeFileSync(file, `${KEY_A}\n`);
    const keyRing = ring({ file }).watch();
    const lease = keyRing.next(); // a call in flight with KEY_A

    writeFileSync(file, `${KEY_A}\n${KEY_B}\n`);
    await waitFor(() => keyRing.size === 2, { what: 'reload after an in-place write' });

    const staged = join(dir, 'gemini-keys.txt.tmp');
    writeFileSync(staged, `${KEY_C}\n`);
    renameSync(staged, file); // how editors and secret managers replace files
    await waitFor(() => keyRing.size === 1 && keyRing.next()?.key === KEY_C, { what: 'reload after a rename' });

    // The in-flight call still holds its key; its late rejection is a no-op, not a crash.
    expect(lease?.key).toBe(KEY_A);
    expect(keyRing.reject(KEY_A, 'API_KEY_INVALID')).toBe(false);
    expect(keyRing.size).toBe(1);
  });

  it('a file event with unchanged keys restores nothing; SIGHUP does', async () => {
    writeFileSync(file, `${KEY_A}\n${KEY_B}\n`);
    const keyRing = ring({ file }).watch();
    keyRing.reject(KEY_A, 'API_KEY_INVALID');

    writeFileSync(file, `# touched\n${KEY_A}\n${KEY_B}\n`); // same keys
    await new Promise((resolve) => setTimeout(resolve, 300)); // debounce (20 ms) + a poll (100 ms) + margin
    expect(keyRing.size).toBe(1);

    process.emit('SIGHUP', 'SIGHUP');
    expect(keyRing.size).toBe(2);
    expect(order(keyRing, 2)).toEqual([KEY_A, KEY_B]);
  });

  it('SIGHUP reloads a changed file; close() stops listening', () => {
    writeFileSync(file, `${KEY_A}\n`);
    const keyRing = ring({ file }).watch();
    const listeners = process.listenerCount('SIGHUP');
    writeFileSync(file, `${KEY_B}\n${KEY_C}\n`);
    process.emit('SIGHUP', 'SIGHUP');
    expect(order(keyRing, 2)).toEqual([KEY_B, KEY_C]);

    keyRing.close();
    expect(process.listenerCount('SIGHUP')).toBe(listeners - 1);
    writeFileSync(file, `${KEY_A}\n`);
    process.emit('SIGHUP', 'SIGHUP');
    expect(keyRing.size).toBe(2);
  });
});

describe('rejectionReason with the real SDK against the emulator', () => {
  const GOOD_KEY = 'good-key';
  const BAD_KEY = 'bad-key-0123456789';
  let emulator: EmulatorProcess;

  beforeAll(async () => {
    emulator = await startEmulatorProcess({ apiKeys: [GOOD_KEY] });
  });
  afterAll(async () => {
    await emulator.stop();
  });
  beforeEach(async () => {
    await emulator.client.reset();
  });

  async function callWith(key: string): Promise<unknown> {
    const model = new GoogleGenerativeAI(key).getGenerativeModel({ model: MODEL }, { baseUrl: emulator.url });
    try {
      await model.generateContent('Say hello.');
      return undefined;
    } catch (error) {
      return error;
    }
  }

  it('a bad key: 400 with ErrorInfo reason API_KEY_INVALID', async () => {
    const error = await callWith(BAD_KEY);
    expect(error).toBeInstanceOf(GoogleGenerativeAIFetchError);
    const fetchError = error as GoogleGenerativeAIFetchError;
    expect(fetchError.status).toBe(400);
    expect(fetchError.errorDetails).toEqual(expect.arrayContaining([expect.objectContaining({ reason: 'API_KEY_INVALID' })]));
    expect(rejectionReason(error)).toBe('API_KEY_INVALID');
    // The pipeline sees it wrapped in a classified ProviderError: the cause is read too.
    expect(rejectionReason(new ProviderError('PROVIDER_AUTH_FAILED', 'x', { disposition: 'fail', cause: error }))).toBe('API_KEY_INVALID');
  });

  it('a missing key: 403 PERMISSION_DENIED', async () => {
    const error = await callWith('');
    expect(error).toBeInstanceOf(GoogleGenerativeAIFetchError);
    expect((error as GoogleGenerativeAIFetchError).status).toBe(403);
    expect(rejectionReason(error)).toBe('PERMISSION_DENIED');
  });

  it('not a key problem: a good key, an unknown model, a bad request, a network error', async () => {
    expect(await callWith(GOOD_KEY)).toBeUndefined();
    const notFound = await new GoogleGenerativeAI(GOOD_KEY)
      .getGenerativeModel({ model: 'no-such-model' }, { baseUrl: emulator.url })
      .generateContent('x')
      .catch((error: unknown) => error);
    expect((notFound as GoogleGenerativeAIFetchError).status).toBe(404);
    expect(rejectionReason(notFound)).toBeUndefined();
    const badRequest = await new GoogleGenerativeAI(GOOD_KEY)
      .getGenerativeModel({ model: MODEL, generationConfig: { temperature: 7 } }, { baseUrl: emulator.url })
      .generateContent('x')
      .catch((error: unknown) => error);
    expect((badRequest as GoogleGenerativeAIFetchError).status).toBe(400);
    expect(rejectionReason(badRequest)).toBeUndefined();
    expect(rejectionReason(new Error('fetch failed'))).toBeUndefined();
    // A 403 about a File the job references is the job's fault: the key stays.
    const fileError = new GoogleGenerativeAIFetchError('[403 Forbidden] You do not have permission to access the File abc or it may not exist.', 403, 'Forbidden', []);
    expect(rejectionReason(fileError)).toBeUndefined();
  });

  it('first key invalid, second valid: every call succeeds and the bad key is called once', async () => {
    const logs = capturedLogger();
    const rejected: KeyRejectedEvent[] = [];
    const keyRing = new KeyRing({ keys: [BAD_KEY, GOOD_KEY], logger: logs.logger, onRejected: (event) => rejected.push(event) });
    // What the pipeline does per call: take a key, and on a key rejection retry with the next one.
    for (let call = 0; call < 5; call++) {
      for (;;) {
        const lease = keyRing.next();
        if (!lease) throw new Error('PROVIDER_AUTH_FAILED');
        const error = await callWith(lease.key);
        if (error === undefined) break;
        const reason = rejectionReason(error);
        if (!reason) throw error;
        keyRing.reject(lease.key, reason);
      }
    }
    const counters = await emulator.client.counters();
    expect(counters.byKey[fingerprint(BAD_KEY)]).toBe(1);
    expect(counters.byKey[fingerprint(GOOD_KEY)]).toBe(5);
    expect(rejected).toEqual([{ fingerprint: fingerprint(BAD_KEY), reason: 'API_KEY_INVALID', remaining: 1 }]);
    expect(logs.text()).not.toContain(BAD_KEY);
  });
});
