import { createHash } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { JobRequest, JobView } from '../types.js';

/**
 * The files of `prompt-queue run`: the JSONL input (one job per line, as in POST /v1/jobs) and the
 * JSONL output (one line per input line: `{ "line": n, ...jobView }`).
 *
 * Idempotency keys: `pq-run:<first 32 hex of sha256(input bytes)>:<line number>`. The key is the
 * file's content and the line, not its path, so a moved or copied file, or a run from another
 * directory, still finds the jobs of an earlier run (within the server's result TTL) and pays
 * nothing twice. Editing the input changes the hash: that is a new run, write it to a new output.
 * A line that brings its own `idempotencyKey` keeps it.
 */

export interface InputLine {
  /** 1-based line number in the file. */
  line: number;
  /** The job to enqueue, with its idempotency key set; undefined when the line is not a JSON object. */
  job?: JobRequest;
  /** Why the line is not a job. */
  invalid?: string;
}

export interface InputFile {
  /** sha256 of the file's bytes, hex. */
  hash: string;
  /** Non-blank lines, in order. */
  lines: InputLine[];
}

export function runKey(hash: string, line: number): string {
  return `pq-run:${hash.slice(0, 32)}:${line}`;
}

export function readInput(path: string): InputFile {
  const bytes = readFileSync(path);
  const hash = createHash('sha256').update(bytes).digest('hex');
  const lines: InputLine[] = [];
  bytes
    .toString('utf8')
    .split('\n')
    .forEach((raw, index) => {
      const text = raw.replace(/\r$/, '').trim();
      if (text === '') return;
      const line = index + 1;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        lines.push({ line, invalid: `not JSON: ${(error as Error).message}` });
        return;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        lines.push({ line, invalid: 'not a JSON object (each line is one job, as in POST /v1/jobs)' });
        return;
      }
      const job = parsed as JobRequest;
      lines.push({ line, job: { ...job, idempotencyKey: job.idempotencyKey ?? runKey(hash, line) } });
    });
  return { hash, lines };
}

/** One line of the output file. */
export type OutputRecord = { line: number } & JobView;

/**
 * The line numbers the output file already has results for. A last line cut short by a crash (no
 * final newline) is removed from the file, so the resumed run appends whole lines only.
 */
export function readDoneLines(path: string): { done: Set<number>; truncatedBytes: number } {
  const done = new Set<number>();
  if (!existsSync(path)) return { done, truncatedBytes: 0 };
  const bytes = readFileSync(path);
  const end = bytes.lastIndexOf(0x0a) + 1;
  let truncatedBytes = 0;
  if (end < bytes.length) {
    const fd = openSync(path, 'r+');
    ftruncateSync(fd, end);
    closeSync(fd);
    truncatedBytes = bytes.length - end;
  }
  for (const text of bytes.subarray(0, end).toString('utf8').split('\n')) {
    if (text.trim() === '') continue;
    try {
      const record = JSON.parse(text) as { line?: unknown };
      if (typeof record.line === 'number') done.add(record.line);
    } catch {
      // a line that is not ours: leave it, it counts for nothing
    }
  }
  return { done, truncatedBytes };
}

/** Appends whole lines with one write each, so a crash leaves at most one cut line (removed on resume). */
export class OutputFile {
  private readonly fd: number;
  private closed = false;

  constructor(path: string) {
    this.fd = openSync(path, 'a');
  }

  append(record: OutputRecord): void {
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
