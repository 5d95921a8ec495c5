import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { createAuditLog, loadConfig, parseAuditDestination, type AuditRecord } from '../src/index.js';

const PROMPT = 'Summarise the secret merger memo for ACME';

const record = (overrides: Partial<AuditRecord> = {}): AuditRecord => ({
  ts: new Date('2026-03-10T10:15:00.000Z'),
  tenant: 'acme',
  jobId: 'job-1',
  promptSha256: 'a'.repeat(64),
  model: 'gemini-3.6-flash',
  provider: 'gemini',
  inputTokens: 1_000,
  outputTokens: 500,
  thoughtsTokens: 20,
  cachedTokens: 0,
  costNanoUsd: 5_400_000,
  outcome: 'completed',
  latencyMs: 812,
  attempt: 1,
  cached: false,
  prompt: PROMPT,
  ...overrides,
});

const FIELDS = [
  'ts', 'tenant', 'jobId', 'promptSha256', 'model', 'provider', 'inputTokens', 'outputTokens', 'thoughtsTokens',
  'cachedTokens', 'costUsd', 'costNanoUsd', 'outcome', 'latencyMs', 'attempt', 'cached',
];

const tempDirs: string[] = [];
afterAll(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pq-audit-'));
  tempDirs.push(dir);
  return join(dir, 'audit.jsonl');
}

describe('audit log', () => {
  afterEach(() => vi.restoreAllMocks());

  it('writes one JSON line per record with the documented fields and no prompt text', async () => {
    const file = tempFile();
    const audit = createAuditLog({ destination: { file } });
    audit.write(record());
    audit.write(record({ jobId: 'job-2', outcome: 'failed', errorCode: 'PROVIDER_TIMEOUT', costNanoUsd: null, attempt: 2 }));
    await audit.close();
    await audit.close(); // idempotent
    audit.write(record({ jobId: 'after-close' })); // dropped, does not throw

    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(PROMPT);
    const lines = text.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines).toHaveLength(2);
    expect(Object.keys(lines[0]!)).toEqual(FIELDS);
    expect(lines[0]).toMatchObject({ ts: '2026-03-10T10:15:00.000Z', tenant: 'acme', costNanoUsd: 5_400_000, costUsd: 0.0054, cached: false });
    expect(Object.keys(lines[1]!)).toEqual([...FIELDS.slice(0, 13), 'errorCode', ...FIELDS.slice(13)]);
    expect(lines[1]).toMatchObject({ jobId: 'job-2', outcome: 'failed', errorCode: 'PROVIDER_TIMEOUT', costUsd: null, attempt: 2 });
  });

  it('adds the prompt only with logPrompts', async () => {
    const file = tempFile();
    const audit = createAuditLog({ destination: { file }, logPrompts: true });
    audit.write(record());
    await audit.close();
    const line = JSON.parse(readFileSync(file, 'utf8').trim()) as Record<string, unknown>;
    expect(line.prompt).toBe(PROMPT);
    expect(Object.keys(line)).toEqual([...FIELDS, 'prompt']);
  });

  it('appends to an existing file', async () => {
    const file = tempFile();
    for (const jobId of ['a', 'b']) {
      const audit = createAuditLog({ destination: { file } });
      audit.write(record({ jobId }));
      await audit.close();
    }
    expect(readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { jobId: string }).jobId)).toEqual(['a', 'b']);
  });

  it('writes to stdout without ending it', async () => {
    const chunks: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      chunks.push(String(chunk));
      return true;
    });
    const audit = createAuditLog({ destination: 'stdout' });
    audit.write(record({ jobId: 'to-stdout' }));
    await audit.close();
    const line = chunks.find((chunk) => chunk.includes('"to-stdout"'));
    expect(line?.endsWith('\n')).toBe(true);
    expect(JSON.parse(line!)).toMatchObject({ jobId: 'to-stdout', tenant: 'acme' });
    expect(line).not.toContain(PROMPT);
    expect(process.stdout.writableEnded).toBe(false);
  });

  it('is configured by AUDIT_LOG (default stderr) and LOG_PROMPTS (default false)', () => {
    expect(loadConfig({}).audit).toEqual({ destination: 'stderr', logPrompts: false });
    expect(loadConfig({ AUDIT_LOG: '/var/log/pq/audit.jsonl', LOG_PROMPTS: 'true' }).audit).toEqual({
      destination: '/var/log/pq/audit.jsonl',
      logPrompts: true,
    });
    expect(loadConfig({ LOG_PROMPTS: 'false' }).audit.logPrompts).toBe(false);
    expect(() => loadConfig({ LOG_PROMPTS: 'maybe' })).toThrow(/LOG_PROMPTS/);
    expect(parseAuditDestination('stdout')).toBe('stdout');
    expect(parseAuditDestination('stderr')).toBe('stderr');
    expect(parseAuditDestination('/tmp/a.jsonl')).toEqual({ file: '/tmp/a.jsonl' });
  });
});
