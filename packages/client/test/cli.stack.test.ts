// The prompt-queue CLI as users run it (the built dist/cli/main.js, a child process) against the
// whole stack: a 5,000-line file interrupted with SIGINT and resumed, the progress bar under a
// pseudo-terminal (`script`), failures and exit codes, and the small commands.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '@prompt-queue/shared/testing';
import type { JobView } from '../src/index.js';
import { cliPath, KEY, startStack, type Stack } from './stack.js';

const LINES = 5_000;

let stack: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pq-cli-'));
  stack = await startStack({
    // Every job must reach the emulator (no response cache), at full speed: limits far above what
    // the test sends, so the fleet does not slow-start.
    env: { RESPONSE_CACHE: 'false', AUDIT_LOG: '/dev/null', GEMINI_RPM: '1000000', GEMINI_TPM: '1000000000', BATCH_SIZE: '64', WORKER_CONCURRENCY: '128' },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function cli(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: dir,
    env: { ...process.env, PROMPT_QUEUE_URL: stack.url, PROMPT_QUEUE_KEY: KEY, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

function records(path: string): (JobView & { line: number })[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as JobView & { line: number });
}

/** Lines in a file, counted without parsing (the test polls this while the stack works). */
function lineCount(path: string): number {
  if (!existsSync(path)) return 0;
  const bytes = readFileSync(path);
  let count = 0;
  for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) count++;
  return count;
}

function writeJsonl(name: string, jobs: unknown[]): string {
  const path = join(dir, name);
  writeFileSync(path, jobs.map((job) => (typeof job === 'string' ? job : JSON.stringify(job))).join('\n') + '\n');
  return path;
}

describe('prompt-queue run', () => {
  it(`${LINES.toLocaleString('en-US')} lines, SIGINT halfway, re-run: every line exactly one result, exactly ${LINES} generate calls`, async () => {
    await stack.emulator.client.reset();
    const input = writeJsonl(
      'prompts.jsonl',
      Array.from({ length: LINES }, (_, i) => ({ prompt: `Line ${i + 1}: one word for a queue`, generationConfig: { maxOutputTokens: 16 } })),
    );
    const output = join(dir, 'results.jsonl');

    const first = cli(['run', input, '-o', output, '--interval', '1']);
    await waitFor(() => lineCount(output) >= LINES / 2, { timeoutMs: 150_000, intervalMs: 100, what: 'half of the results' });
    first.child.kill('SIGINT');
    expect(await first.exit).toBe(130);
    expect(first.stderr()).toMatch(/^progress [\d,]+\/5,000 · done [\d,]+ · failed 0 · waiting for quota \d+ · [\d.]+ jobs\/s · ETA \S+ · cost \$[\d.]+$/m);
    expect(first.stderr()).toContain('Interrupted:');
    expect(first.stderr()).toContain(`Resume with:\n    prompt-queue run ${input} -o ${output}`);
    const partial = records(output);
    expect(partial.length).toBeGreaterThanOrEqual(LINES / 2);
    expect(partial.length).toBeLessThan(LINES);
    expect(new Set(partial.map((record) => record.line)).size).toBe(partial.length);

    const second = cli(['run', input, '-o', output, '--interval', '1']);
    expect(await second.exit).toBe(0);
    expect(second.stderr()).toContain(`resuming: ${partial.length} of ${LINES} lines already have results`);
    expect(second.stderr()).toMatch(/Done: 5000 of 5000 lines have a result/);

    const all = records(output);
    expect(all).toHaveLength(LINES);
    expect(all.map((record) => record.line).sort((a, b) => a - b)).toEqual(Array.from({ length: LINES }, (_, i) => i + 1));
    expect(all.filter((record) => record.status !== 'completed')).toEqual([]);
    expect(new Set(all.map((record) => record.id)).size).toBe(LINES);
    expect(all.every((record) => record.result!.text.length > 0)).toBe(true);
    // Jobs the first run enqueued were re-attached, not made again: the emulator served each line once.
    expect(await stack.generateCalls()).toBe(LINES);
  }, 300_000);

  it('draws a live progress bar on a terminal (pseudo-terminal via `script`)', async () => {
    const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
    expect(script.status, 'util-linux `script` is needed (apt-get install bsdutils)').toBe(0);
    const input = writeJsonl('tty.jsonl', Array.from({ length: 300 }, (_, i) => ({ prompt: `tty line ${i}` })));
    const output = join(dir, 'tty-results.jsonl');
    const command = `stty cols 200 rows 40; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(cliPath)} run ${input} -o ${output}`;
    const run = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: dir,
      env: { ...process.env, PROMPT_QUEUE_URL: stack.url, PROMPT_QUEUE_KEY: KEY, TERM: 'xterm-256color' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    run.stdout.on('data', (chunk: Buffer) => (screen += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => run.once('exit', resolve));
    expect(code, screen).toBe(0);
    // cli-progress redraws in place (carriage returns, cursor codes), never the piped mode's lines.
    expect(screen).toMatch(/[█░]{24} \d+% \d+\/300 \| done \d+ \| failed 0 \| waiting for quota 0 \| [\d.]+ jobs\/s \| ETA \S+ \| cost \$[\d.]+/);
    expect(screen).toContain('█'.repeat(24) + ' 100% 300/300 | done 300');
    expect(screen.includes('\r') || screen.includes('\u001b[')).toBe(true);
    expect(screen).not.toMatch(/^progress /m);
    expect(screen).toContain('Done: 300 of 300 lines have a result');
    expect(records(output)).toHaveLength(300);
  }, 120_000);

  it('fails bad lines alone, writes --ordered results in input order, exits 1 unless --allow-failures', async () => {
    const input = writeJsonl('mixed.jsonl', [
      { prompt: 'good 1' },
      'this is not json',
      { prompt: 'good 2', metadata: { row: 3 } },
      { prompt: 'unknown model', model: 'no-such-model' },
      { prompt: 'good 3' },
    ]);
    const output = join(dir, 'mixed-results.jsonl');
    const failing = cli(['run', input, '-o', output, '--ordered']);
    expect(await failing.exit).toBe(1);
    expect(failing.stderr()).toContain('2 jobs did not complete (exit 1; --allow-failures exits 0)');
    const out = records(output);
    expect(out.map((record) => [record.line, record.status, record.error?.code])).toEqual([
      [1, 'completed', undefined],
      [2, 'failed', 'VALIDATION_FAILED'],
      [3, 'completed', undefined],
      [4, 'failed', 'UNKNOWN_MODEL'],
      [5, 'completed', undefined],
    ]);
    expect(out[2]!.metadata).toEqual({ row: 3 });

    const allowed = cli(['run', input, '-o', join(dir, 'allowed.jsonl'), '--allow-failures']);
    expect(await allowed.exit).toBe(0);
    expect(records(join(dir, 'allowed.jsonl'))).toHaveLength(5);
  });
});

describe('prompt-queue status, cancel, usage, tail', () => {
  it('show a job, refuse to cancel a finished one with its code, show usage, replay a job\'s events', async () => {
    const input = writeJsonl('one.jsonl', [{ prompt: 'just one' }]);
    const output = join(dir, 'one-results.jsonl');
    expect(await cli(['run', input, '-o', output]).exit).toBe(0);
    const [record] = records(output);

    const status = cli(['status', record!.id]);
    expect(await status.exit).toBe(0);
    expect(JSON.parse(status.stdout())).toMatchObject({ id: record!.id, status: 'completed' });

    const cancel = cli(['cancel', record!.id]);
    expect(await cancel.exit).toBe(1);
    expect(cancel.stderr()).toMatch(/^error 409 JOB_NOT_CANCELLABLE: /);

    const usage = cli(['usage']);
    expect(await usage.exit).toBe(0);
    expect(JSON.parse(usage.stdout())).toMatchObject({ tenant: 'acme', today: { jobs: expect.any(Number) } });

    const tail = cli(['tail', '--job', record!.id, '--json']);
    expect(await tail.exit).toBe(0);
    const events = tail.stdout().trim().split('\n').map((line) => JSON.parse(line) as { type: string });
    expect(events.map((event) => event.type)).toEqual(['queued', 'active', 'completed']);

    const noKey = cli(['usage'], { PROMPT_QUEUE_KEY: '' });
    expect(await noKey.exit).toBe(2);
    expect(noKey.stderr()).toContain('set PROMPT_QUEUE_KEY or pass --key');
  });
});
