#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { PromptQueueClient } from '../client.js';
import { isApiError, isNetworkError } from '../errors.js';
import { BarReporter, LineReporter, SilentReporter, type ProgressReporter } from './progress.js';
import { runFile, summaryLines } from './run.js';

/** Exit codes: 0 ok, 1 jobs failed or a request was refused, 2 bad usage, 130 interrupted (Ctrl-C). */
const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

interface GlobalOptions {
  url: string;
  key?: string;
}

function clientOf(command: Command): PromptQueueClient {
  const { url, key } = command.optsWithGlobals<GlobalOptions>();
  if (!key) {
    command.error('error: no API key: set PROMPT_QUEUE_KEY or pass --key (a tenant key from the server\'s API_KEYS; `npm start` uses dev-key)', { exitCode: EXIT.usage });
  }
  return new PromptQueueClient({ url, apiKey: key });
}

function positiveInt(max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`an integer from 1 to ${max}`);
    return n;
  };
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const program = new Command('prompt-queue')
  .description('Enqueue Gemini prompt jobs into prompt-queue, run a JSONL file of prompts, follow events.')
  .version(version)
  .addOption(new Option('--url <url>', 'the producer\'s base URL').env('PROMPT_QUEUE_URL').default('http://127.0.0.1:3000'))
  .addOption(new Option('--key <key>', 'a tenant API key').env('PROMPT_QUEUE_KEY'))
  .showHelpAfterError();

program
  .command('run')
  .description('Run every line of a JSONL file as a job (each line a POST /v1/jobs body); write one result line per input line.')
  .argument('<file>', 'the prompts, one JSON job per line')
  .requiredOption('-o, --output <file>', 'results, one JSON line per input line: { "line": n, ...job view }; appended to, and resumed from')
  .option('--ordered', 'write results in input order (default: as they finish)', false)
  .option('--allow-failures', 'exit 0 even when jobs failed', false)
  .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'lines', 'none']).default('auto'))
  .option('--interval <seconds>', 'seconds between progress lines when not on a terminal', positiveInt(3600), 5)
  .option('--concurrency <n>', 'GET requests at once, for results that did not come as events', positiveInt(256), 16)
  .option('--chunk-size <n>', 'jobs per bulk request', positiveInt(1000), 1000)
  .action(async (file: string, opts: { output: string; ordered: boolean; allowFailures: boolean; progress: string; interval: number; concurrency: number; chunkSize: number }, command: Command) => {
    const client = clientOf(command);
    const mode = opts.progress === 'auto' ? (process.stderr.isTTY ? 'bar' : 'lines') : opts.progress;
    const reporter: ProgressReporter =
      mode === 'bar' ? new BarReporter(process.stderr) : mode === 'lines' ? new LineReporter(opts.interval * 1_000) : new SilentReporter();

    const interrupt = new AbortController();
    let interrupts = 0;
    const onSigint = () => {
      interrupts++;
      if (interrupts === 1) {
        reporter.log('stopping: writing the results that arrived (Ctrl-C again to quit at once)');
        interrupt.abort();
      } else {
        process.exit(EXIT.interrupted); // every line written so far is already on disk
      }
    };
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);

    let outcome;
    try {
      outcome = await runFile(client, {
        input: file,
        output: opts.output,
        ordered: opts.ordered,
        concurrency: opts.concurrency,
        chunkSize: opts.chunkSize,
        sweepAfterMs: 10_000,
        reporter,
        signal: interrupt.signal,
      });
    } catch (error) {
      reporter.stop({ total: 0, written: 0, completed: 0, failed: 0, cancelled: 0, waitingForQuota: 0, finishedThisRun: 0, startedAt: Date.now(), costNanoUsd: 0 });
      process.stderr.write(`error: ${(error as Error).message}\n`);
      process.exitCode = EXIT.failed;
      return;
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
    reporter.stop(outcome.stats);
    for (const line of summaryLines(outcome, { input: file, output: opts.output, ordered: opts.ordered })) process.stderr.write(`${line}\n`);
    const failures = outcome.stats.failed + outcome.stats.cancelled;
    if (outcome.interrupted) process.exitCode = EXIT.interrupted;
    else if (outcome.error) process.exitCode = EXIT.failed;
    else if (failures > 0 && !opts.allowFailures) {
      process.stderr.write(`${failures} jobs did not complete (exit 1; --allow-failures exits 0)\n`);
      process.exitCode = EXIT.failed;
    }
  });

program
  .command('status')
  .description('Show a job (GET /v1/jobs/:id) as JSON.')
  .argument('<id>')
  .option('--wait <seconds>', 'long-poll until it finishes, at most this long', positiveInt(3600))
  .action(async (id: string, opts: { wait?: number }, command: Command) => {
    const client = clientOf(command);
    print(opts.wait ? await client.wait(id, { timeoutMs: opts.wait * 1_000 }).catch((error) => (error.lastView ? error.lastView : Promise.reject(error))) : await client.get(id));
  });

program
  .command('cancel')
  .description('Cancel a job that has not started (DELETE /v1/jobs/:id).')
  .argument('<id>')
  .action(async (id: string, _opts: unknown, command: Command) => {
    print(await clientOf(command).cancel(id));
  });

program
  .command('usage')
  .description('Your usage today and this month, and your budget (GET /v1/usage), as JSON.')
  .action(async (_opts: unknown, command: Command) => {
    print(await clientOf(command).usage());
  });

program
  .command('tail')
  .description('Follow live job events (Server-Sent Events): all your jobs from now on, or one job from its start.')
  .option('--job <id>', 'one job: replays its events and stops after its end')
  .option('--from <eventId>', 'resume after this event id (0: the whole retained history)')
  .option('--json', 'one JSON event per line', false)
  .action(async (opts: { job?: string; from?: string; json: boolean }, command: Command) => {
    const client = clientOf(command);
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    for await (const event of client.events({ jobId: opts.job, lastEventId: opts.from, signal: stop.signal })) {
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(event)}\n`);
        continue;
      }
      const extra = [
        event.attempt !== undefined ? `attempt ${event.attempt}` : '',
        event.reason ? `${event.reason}${event.until ? ` until ${event.until}` : ''}` : '',
        event.code ?? '',
        event.view?.result ? `${event.view.result.usage.totalTokens} tokens, $${event.view.result.costUsd ?? 0}` : '',
      ].filter(Boolean);
      process.stdout.write(`${event.at}  ${event.type.padEnd(9)} ${event.jobId}${extra.length ? `  ${extra.join(' · ')}` : ''}\n`);
    }
  });

try {
  await program.parseAsync();
} catch (error) {
  if (isApiError(error)) process.stderr.write(`error ${error.status} ${error.code}: ${error.message}\n`);
  else if (isNetworkError(error)) process.stderr.write(`error: cannot reach ${program.opts<GlobalOptions>().url}: ${error.message}\n`);
  else process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = EXIT.failed;
}
// Exit once stdout and stderr are flushed, rather than when fetch's idle keep-alive sockets let go
// of the event loop (seconds later).
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise((resolve) => stream.write('', resolve))));
process.exit();
