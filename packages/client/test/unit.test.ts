// The client's parts that need no server: SSE parsing, backoff, webhook verification against the
// server's own signer, the run files (keys, resume, cut lines), and what the library may import.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { signatureHeader } from '@prompt-queue/shared';
import { verifyWebhook, isWebhookVerificationError, WebhookVerificationError } from '../src/index.js';
import { backoffMs, resolveRetry, retryAfterMs } from '../src/retry.js';
import { parseSse } from '../src/sse.js';
import { readDoneLines, readInput, runKey } from '../src/cli/files.js';

const here = dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pq-client-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

describe('parseSse', () => {
  it('parses events split anywhere across chunks, skips comments, keeps ids, joins data lines', async () => {
    const events = [];
    for await (const event of parseSse(streamOf(': ping\n\nid: 1-0\nevent: que', 'ued\ndata: {"a":1}\r\n\r', '\nevent: x\ndata: a\ndata: b\n\n', 'data: tail\n\n'))) {
      events.push(event);
    }
    expect(events).toEqual([
      { id: '1-0', event: 'queued', data: '{"a":1}' },
      { id: undefined, event: 'x', data: 'a\nb' },
      { id: undefined, event: 'message', data: 'tail' },
    ]);
  });
});

describe('retry policy', () => {
  it('backs off exponentially with full jitter, capped, with Retry-After as a floor', () => {
    const policy = resolveRetry({ baseDelayMs: 100, maxDelayMs: 1_000 });
    expect(backoffMs(1, policy, 0, () => 1)).toBe(100);
    expect(backoffMs(3, policy, 0, () => 1)).toBe(400);
    expect(backoffMs(10, policy, 0, () => 1)).toBe(1_000);
    expect(backoffMs(2, policy, 0, () => 0)).toBe(0);
    expect(backoffMs(1, policy, 2_000, () => 1)).toBe(2_000);
    expect(retryAfterMs('3')).toBe(3_000);
    expect(retryAfterMs(new Date(10_000).toUTCString(), 5_000)).toBe(5_000);
    expect(retryAfterMs(null)).toBe(0);
  });
});

describe('verifyWebhook (Web Crypto) against the server signer (packages/shared/src/webhooks/signature.ts)', () => {
  const body = JSON.stringify({ id: 'j1.job.completed', type: 'job.completed', createdAt: '2026-01-01T00:00:00.000Z', data: { id: 'j1', status: 'completed' } });
  const secret = 'whsec_0123456789abcdef';
  const now = 1_793_613_600_000;
  const t = now / 1_000;

  it('accepts what the server signs, as a string or bytes, with Node headers or fetch Headers', async () => {
    const header = signatureHeader(body, [secret], t);
    const fromNode = await verifyWebhook({ 'promptqueue-signature': header, 'promptqueue-event-id': 'j1.job.completed' }, body, secret, { now });
    expect(fromNode).toMatchObject({ eventId: 'j1.job.completed', timestampSeconds: t, event: { id: 'j1.job.completed', type: 'job.completed' } });
    const headers = new Headers({ 'PromptQueue-Signature': header });
    await expect(verifyWebhook(headers, new TextEncoder().encode(body), secret, { now })).resolves.toMatchObject({ timestampSeconds: t });
  });

  it('accepts either secret during a rotation (one v1 per secret)', async () => {
    const header = signatureHeader(body, ['old-secret-0123456789', secret], t);
    await expect(verifyWebhook({ 'promptqueue-signature': header }, body, secret, { now })).resolves.toBeDefined();
    await expect(verifyWebhook({ 'promptqueue-signature': header }, body, ['other-secret-000000', 'old-secret-0123456789'], { now })).resolves.toBeDefined();
  });

  it.each([
    ['missing-signature', {}, body, now],
    ['malformed-signature', { 'promptqueue-signature': 't=abc,v1=zz' }, body, now],
    ['timestamp-outside-tolerance', { 'promptqueue-signature': signatureHeader(body, [secret], t) }, body, now + 301_000],
    ['signature-mismatch', { 'promptqueue-signature': signatureHeader(body, [secret], t) }, `${body} `, now],
    ['signature-mismatch', { 'promptqueue-signature': signatureHeader(body, ['another-secret-00000'], t) }, body, now],
  ] as const)('refuses with reason %s', async (reason, headers, rawBody, at) => {
    const error = await verifyWebhook(headers, rawBody, secret, { now: at }).catch((e: unknown) => e);
    expect(isWebhookVerificationError(error)).toBe(true);
    expect((error as WebhookVerificationError).reason).toBe(reason);
  });
});

describe('run files', () => {
  it('derives keys from the content hash and line number, keeps a line\'s own key, marks invalid lines', () => {
    const input = join(dir, 'in.jsonl');
    writeFileSync(input, '{"prompt":"a"}\n\n{"prompt":"b","idempotencyKey":"mine"}\nnot json\n[1]\n');
    const { hash, lines } = readInput(input);
    expect(lines.map((line) => line.line)).toEqual([1, 3, 4, 5]);
    expect(lines[0]!.job!.idempotencyKey).toBe(runKey(hash, 1));
    expect(runKey(hash, 1)).toMatch(/^pq-run:[0-9a-f]{32}:1$/);
    expect(lines[1]!.job!.idempotencyKey).toBe('mine');
    expect(lines[2]!.invalid).toMatch(/not JSON/);
    expect(lines[3]!.invalid).toMatch(/not a JSON object/);
    // Same bytes elsewhere: same keys (a moved file resumes); other bytes: other keys.
    const copy = join(dir, 'copy.jsonl');
    writeFileSync(copy, readFileSync(input));
    expect(readInput(copy).lines[0]!.job!.idempotencyKey).toBe(runKey(hash, 1));
    writeFileSync(copy, '{"prompt":"a!"}\n');
    expect(readInput(copy).lines[0]!.job!.idempotencyKey).not.toBe(runKey(hash, 1));
  });

  it('reads done lines from the output and cuts a partial last line', () => {
    const output = join(dir, 'out.jsonl');
    writeFileSync(output, '{"line":1,"id":"a"}\n{"line":4,"id":"b"}\n{"line":5,"id":"c","sta');
    const { done, truncatedBytes } = readDoneLines(output);
    expect([...done]).toEqual([1, 4]);
    expect(truncatedBytes).toBeGreaterThan(0);
    expect(readFileSync(output, 'utf8')).toBe('{"line":1,"id":"a"}\n{"line":4,"id":"b"}\n');
    expect(readDoneLines(join(dir, 'absent.jsonl')).done.size).toBe(0);
  });
});

describe('the library runs in browsers', () => {
  it('imports no node: module and nothing from node_modules outside the CLI', () => {
    const src = join(here, '../src');
    const files = readdirSync(src).filter((name) => name.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(4);
    for (const name of files) {
      const imports = [...readFileSync(join(src, name), 'utf8').matchAll(/from '([^']+)'/g)].map((match) => match[1]!);
      expect(imports.filter((specifier) => !specifier.startsWith('./')), name).toEqual([]);
    }
  });
});

describe('types', () => {
  it('agree with the server\'s (tsc over test/contract.types.ts)', () => {
    const tsc = join(here, '../../../node_modules/typescript/bin/tsc');
    const result = spawnSync(process.execPath, [tsc, '-p', join(here, '../tsconfig.test.json')], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  }, 120_000);
});
