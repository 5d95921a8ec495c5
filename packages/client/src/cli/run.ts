import { fsyncSync, openSync, closeSync } from 'node:fs';
import { PromptQueueClient } from '../client.js';
import { isApiError, PromptQueueApiError } from '../errors.js';
import { isFinalStatus, type JobEvent, type JobRequest, type JobView } from '../types.js';
import { OutputFile, readDoneLines, readInput, type InputLine, type OutputRecord } from './files.js';
import { duration, ratePerSecond, usd, type ProgressReporter, type RunStats } from './progress.js';

/**
 * `prompt-queue run`: every line of a JSONL file becomes a job, every job one line of results.
 *
 * 1. Lines already in the output file are skipped; the others are enqueued in bulk requests of up
 *    to 1,000 with idempotency keys derived from the file (files.ts), so a job a killed run already
 *    enqueued is found again, not made again (the server answers its id and current status).
 * 2. Results come from ONE Server-Sent Events stream of the tenant (`GET /v1/events`, opened before
 *    the first enqueue, so no end is missed): its final events carry the job view. Jobs that ended
 *    before (a resumed run) are read with GET, at most `concurrency` at a time. When no job ended for
 *    a while (the stream dropped, or its history was trimmed), a sweep reads the unfinished jobs the
 *    same way, with a back-off between sweeps.
 * 3. Each result is appended as one line (`{ line, ...view }`), as it arrives, or in input order
 *    with `ordered`. Ctrl-C stops: what arrived is written, and the next run resumes.
 */

export interface RunOptions {
  input: string;
  output: string;
  /** Write results in input order (a result waits for the lines before it). */
  ordered: boolean;
  /** GETs in flight at once, for jobs whose end did not come as an event. */
  concurrency: number;
  /** Jobs per bulk request (≤ 1,000). */
  chunkSize: number;
  /** First sweep after this long without a job ending, ms (then doubling, up to 5 minutes). */
  sweepAfterMs: number;
  reporter: ProgressReporter;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
}

export interface RunOutcome {
  stats: RunStats;
  /** Lines skipped because the output already had them. */
  resumed: number;
  interrupted: boolean;
  /** Ordered mode only: results that had arrived but waited for earlier lines when interrupted. */
  heldBack: number;
  /** A reason the run stopped before every line had a result (a refused request, …). */
  error?: string;
}

/** Whatever may hold a job back for long: the `waiting` event's reasons. */
const QUOTA_REASONS = new Set(['quota', 'rate-limited', 'daily-quota', 'budget']);

export async function runFile(client: PromptQueueClient, options: RunOptions): Promise<RunOutcome> {
  const input = readInput(options.input);
  const { done: doneBefore, truncatedBytes } = readDoneLines(options.output);
  if (truncatedBytes > 0) options.reporter.log(`note: removed a cut-off last line (${truncatedBytes} bytes) from ${options.output}`);
  const pending = input.lines.filter((line) => !doneBefore.has(line.line));
  const resumed = input.lines.length - pending.length;

  const stats: RunStats = {
    total: input.lines.length,
    written: resumed,
    completed: 0,
    failed: 0,
    cancelled: 0,
    waitingForQuota: 0,
    finishedThisRun: 0,
    startedAt: Date.now(),
    costNanoUsd: 0,
  };
  if (resumed > 0) options.reporter.log(`resuming: ${resumed} of ${input.lines.length} lines already have results in ${options.output}`);
  if (pending.length === 0) return { stats, resumed, interrupted: false, heldBack: 0 };

  const run = new Run(client, options, stats, pending);
  return { ...(await run.execute()), resumed };
}

class Run {
  private readonly out: OutputFile;
  /** Job id → input line, for every job enqueued by this run. */
  private readonly lineOf = new Map<string, number>();
  /** Lines with a result (this run). */
  private readonly finished = new Set<number>();
  private readonly waiting = new Set<string>();
  /** Ends seen on the stream before the bulk answer named their job (a fast worker). */
  private readonly early = new Map<string, JobView>();
  private enqueueDone = false;
  /** Ordered mode: results waiting for earlier lines, and the next position in `pending` to write. */
  private readonly held = new Map<number, OutputRecord>();
  private nextIndex = 0;
  private readonly stop = new AbortController();
  private allDone!: () => void;
  private readonly allDonePromise = new Promise<void>((resolve) => (this.allDone = resolve));
  private lastEndAt = Date.now();
  /** Job ids to GET, and GETs running. */
  private readonly toRead = new Set<string>();
  private readers = 0;
  private error: string | undefined;

  constructor(
    private readonly client: PromptQueueClient,
    private readonly options: RunOptions,
    private readonly stats: RunStats,
    private readonly pending: InputLine[],
  ) {
    this.out = new OutputFile(options.output);
  }

  async execute(): Promise<Omit<RunOutcome, 'resumed'>> {
    const onInterrupt = () => this.stop.abort();
    this.options.signal.addEventListener('abort', onInterrupt, { once: true });
    if (this.options.signal.aborted) this.stop.abort();
    this.report();
    const ticker = setInterval(() => this.report(), 250);
    try {
      // Invalid lines need no server: their result is written now.
      for (const line of this.pending) if (line.invalid) this.finish(line.line, localFailure(line.line, 'VALIDATION_FAILED', line.invalid));

      const opened = new Promise<void>((resolve) => {
        void this.follow(resolve);
        setTimeout(resolve, 5_000).unref(); // no stream: the sweeps still find every end
      });
      await opened;
      const sweeping = this.sweepLoop();
      await Promise.race([this.enqueueAll(), this.stopped()]);
      this.enqueueDone = true;
      this.early.clear();
      if (!this.error && !this.stop.signal.aborted) await Promise.race([this.allDonePromise, this.stopped()]);
      this.stop.abort();
      await sweeping;
    } finally {
      clearInterval(ticker);
      this.options.signal.removeEventListener('abort', onInterrupt);
      this.stop.abort();
      this.close();
    }
    return {
      stats: this.stats,
      interrupted: this.options.signal.aborted,
      heldBack: this.held.size,
      ...(this.error ? { error: this.error } : {}),
    };
  }

  private stopped(): Promise<void> {
    return new Promise((resolve) => {
      if (this.stop.signal.aborted) resolve();
      else this.stop.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  }

  private close(): void {
    try {
      const fd = openSync(this.options.output, 'r');
      fsyncSync(fd);
      closeSync(fd);
    } catch {
      // best effort: the lines are written already
    }
    this.out.close();
  }

  /**
   * Bulk requests of `chunkSize`, one after another. A request is all or none on the server: when
   * it names refused items (`jobs[3].model`), those lines fail and the others are sent again; a
   * request too large as a whole is split in two.
   */
  private async enqueueAll(): Promise<void> {
    const jobs = this.pending.filter((line) => line.job && !this.finished.has(line.line));
    const queue: InputLine[][] = [];
    for (let offset = 0; offset < jobs.length; offset += this.options.chunkSize) queue.push(jobs.slice(offset, offset + this.options.chunkSize));
    while (queue.length > 0 && !this.stop.signal.aborted) {
      const chunk = queue.shift()!;
      if (chunk.length === 0) continue;
      let answer;
      try {
        answer = await this.client.enqueueBulk(
          chunk.map((line) => line.job as JobRequest),
          { chunkSize: chunk.length, signal: this.stop.signal },
        );
      } catch (error) {
        if (!this.stop.signal.aborted) this.fail(`enqueue failed: ${message(error)}`);
        return;
      }
      const [result] = answer.chunks;
      if (result?.status === 'accepted') {
        result.jobs.forEach((accepted, i) => this.track(accepted.id, accepted.status, chunk[i]!.line));
        continue;
      }
      const error = result?.status === 'rejected' ? result.error : undefined;
      if (!error) return this.fail('enqueue failed: no answer');
      const refused = refusedItems(error);
      if (refused.size > 0) {
        for (const [index, issue] of refused) {
          const line = chunk[index]!.line;
          this.finish(line, localFailure(line, issue.code, issue.message));
        }
        queue.unshift(chunk.filter((_, index) => !refused.has(index)));
      } else if (error.code === 'PAYLOAD_TOO_LARGE' && chunk.length > 1) {
        const half = Math.ceil(chunk.length / 2); // big images: the request, not one job, is too large
        this.options.reporter.log(`a bulk request of ${chunk.length} jobs was too large; sending ${half} per request`);
        queue.unshift(chunk.slice(0, half), chunk.slice(half));
      } else {
        return this.fail(`the server refused the jobs: ${error.code}: ${error.message}`);
      }
    }
  }

  private fail(reason: string): void {
    this.error = reason;
    this.stop.abort();
  }

  private track(id: string, status: string, line: number): void {
    this.lineOf.set(id, line);
    const early = this.early.get(id);
    if (early) {
      this.early.delete(id);
      this.end(early);
    } else if (isFinalStatus(status as JobView['status'])) {
      this.read([id]); // ended before this run (a resumed run): read its result
    }
  }

  /** The tenant's live events; ends (with their view) are results. Reconnects by itself. */
  private async follow(onOpen: () => void): Promise<void> {
    try {
      for await (const event of this.client.events({ signal: this.stop.signal, onOpen })) this.onEvent(event);
    } catch (error) {
      if (!this.stop.signal.aborted) this.options.reporter.log(`event stream lost (${message(error)}); reading results by polling`);
    }
  }

  private onEvent(event: JobEvent): void {
    const known = this.lineOf.has(event.jobId);
    if (isFinalStatus(event.type) && event.view) {
      if (known) this.end(event.view);
      else if (!this.enqueueDone) this.early.set(event.jobId, event.view);
      return;
    }
    if (!known) return;
    if (event.type === 'waiting' && QUOTA_REASONS.has(event.reason ?? '')) this.waiting.add(event.jobId);
    else this.waiting.delete(event.jobId);
    this.stats.waitingForQuota = this.waiting.size;
  }

  private end(view: JobView): void {
    const line = this.lineOf.get(view.id);
    if (line === undefined || !isFinalStatus(view.status)) return;
    this.waiting.delete(view.id);
    this.stats.waitingForQuota = this.waiting.size;
    this.lastEndAt = Date.now();
    this.finish(line, { line, ...view });
  }

  /** One result per line, whatever path brought it (event, GET, sweep): later ones are dropped. */
  private finish(line: number, record: OutputRecord): void {
    if (this.finished.has(line)) return;
    this.finished.add(line);
    const s = this.stats;
    s.finishedThisRun++;
    if (record.status === 'completed') s.completed++;
    else if (record.status === 'cancelled') s.cancelled++;
    else s.failed++;
    s.costNanoUsd += record.result?.costNanoUsd ?? 0;
    if (this.options.ordered) {
      this.held.set(line, record);
      this.flushHeld();
    } else {
      this.out.append(record);
      s.written++;
    }
    if (this.finished.size === this.pending.length) this.allDone();
  }

  private flushHeld(): void {
    for (;;) {
      const next = this.pending[this.nextIndex];
      const record = next && this.held.get(next.line);
      if (!record) return;
      this.held.delete(next.line);
      this.out.append(record);
      this.stats.written++;
      this.nextIndex++;
    }
  }

  /** Queues jobs to GET; at most `concurrency` GETs run at once, each id once per queueing. */
  private read(ids: string[]): void {
    for (const id of ids) this.toRead.add(id);
    while (this.readers < this.options.concurrency && this.readers < this.toRead.size) {
      this.readers++;
      void this.reader().finally(() => this.readers--);
    }
  }

  private async reader(): Promise<void> {
    for (const id of this.toRead) {
      if (this.stop.signal.aborted) return;
      this.toRead.delete(id);
      try {
        const view = await this.client.get(id, { signal: this.stop.signal });
        if (view.waiting) this.waiting.add(id);
        this.end(view);
      } catch (error) {
        if (this.stop.signal.aborted) return;
        if (isApiError(error, 'NOT_FOUND')) {
          // Expired (older than RESULT_TTL_SECONDS): report it rather than wait forever.
          const line = this.lineOf.get(id)!;
          this.finish(line, localFailure(line, 'NOT_FOUND', `job ${id} no longer exists on the server (older than its result TTL?)`));
        }
        // anything else: the next sweep asks again
      }
    }
  }

  /** While jobs are open and none ended for a while, read them all; the wait doubles while nothing ends. */
  private async sweepLoop(): Promise<void> {
    let quietMs = this.options.sweepAfterMs;
    let finishedAtLastSweep = -1;
    while (!this.stop.signal.aborted) {
      await sleepUnlessAborted(Math.min(quietMs, 1_000), this.stop.signal);
      if (this.stop.signal.aborted || this.toRead.size > 0) continue;
      if (Date.now() - this.lastEndAt < quietMs) continue;
      const open = [...this.lineOf].filter(([, line]) => !this.finished.has(line)).map(([id]) => id);
      quietMs = this.finished.size > finishedAtLastSweep ? this.options.sweepAfterMs : Math.min(quietMs * 2, 300_000);
      finishedAtLastSweep = this.finished.size;
      this.lastEndAt = Date.now();
      this.read(open);
    }
  }

  private report(): void {
    this.options.reporter.update({ ...this.stats });
  }
}

/** Items of a refused bulk request named in its `details` (`jobs[3].prompt`): index → issue. */
function refusedItems(error: PromptQueueApiError): Map<number, { code: string; message: string }> {
  const items = new Map<number, { code: string; message: string }>();
  for (const issue of error.details ?? []) {
    const match = /^jobs\[(\d+)\]\.?(.*)$/.exec(issue.path);
    if (!match) return new Map(); // a problem of the request, not of an item
    const index = Number(match[1]);
    if (!items.has(index)) items.set(index, { code: issue.code ?? error.code, message: `${match[2] || 'job'}: ${issue.message}` });
  }
  return items;
}

function localFailure(line: number, code: string, messageText: string): OutputRecord {
  return {
    line,
    id: '',
    status: 'failed',
    model: '',
    attempts: 0,
    createdAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    error: { code: code as NonNullable<JobView['error']>['code'], message: messageText, retryable: false },
  };
}

function message(error: unknown): string {
  if (error instanceof PromptQueueApiError) return `${error.code}: ${error.message}`;
  return error instanceof Error ? error.message : String(error);
}

function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The closing lines of a run. */
export function summaryLines(outcome: RunOutcome, options: { input: string; output: string; ordered: boolean }): string[] {
  const { stats } = outcome;
  const seconds = (Date.now() - stats.startedAt) / 1_000;
  const lines = [
    `${outcome.interrupted ? 'Interrupted' : outcome.error ? 'Stopped' : 'Done'}: ${stats.written} of ${stats.total} lines have a result in ${options.output}` +
      (outcome.resumed > 0 ? ` (${outcome.resumed} from an earlier run)` : ''),
    `  this run: ${stats.completed} completed, ${stats.failed} failed, ${stats.cancelled} cancelled in ${duration(seconds)} (${ratePerSecond(stats).toFixed(1)} jobs/s), cost ${usd(stats.costNanoUsd)}`,
  ];
  if (outcome.error) lines.push(`  ${outcome.error}`);
  if (outcome.heldBack > 0) lines.push(`  ${outcome.heldBack} results arrived ahead of earlier lines and were not written (--ordered); the next run reads them back without paying again`);
  if (outcome.interrupted || outcome.error) {
    lines.push('  Jobs already enqueued keep running on the server and are not paid twice. Resume with:');
    lines.push(`    prompt-queue run ${shellQuote(options.input)} -o ${shellQuote(options.output)}${options.ordered ? ' --ordered' : ''}`);
  }
  return lines;
}

function shellQuote(value: string): string {
  return /^[\w./@:=+-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
