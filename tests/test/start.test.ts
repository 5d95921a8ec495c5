// `npm start` (scripts/start.mjs) as a user runs it in a terminal: its own process group (the
// terminal's foreground job), and Ctrl-C is SIGINT to that whole group. It starts its private
// redis-server, the Gemini emulator, the producer, a worker and the dashboard; one Ctrl-C must let
// the worker drain its in-flight calls and stop Redis last, a second one (a second later) forces.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmulatorClient } from '@prompt-queue/gemini-emulator';
import { SAME_STOP_REQUEST_MS } from '@prompt-queue/shared';
import { freePort, waitFor } from '@prompt-queue/shared/testing';
import { afterEach, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const KEY = 'dev-key';

interface Started {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  producer: string;
  emulator: EmulatorClient;
  redisDir: string;
}

const started: Started[] = [];

afterEach(async () => {
  // A failed test must not leave the stack running: the group of start.mjs, then each child's group
  // (they run detached) through start.mjs's own exit handler, or by SIGKILL of the script.
  for (const run of started.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      process.kill(-run.child.pid!, 'SIGINT');
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
      await run.exited;
      clearTimeout(timer);
    }
  }
});

/** Runs `node scripts/start.mjs --no-build` in a process group of its own, until it prints its banner. */
async function startStack(): Promise<Started> {
  const child = spawn(process.execPath, ['scripts/start.mjs', '--no-build'], {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      // Nothing answers there: start.mjs starts its private redis-server.
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
      GEMINI_API_KEY: '',
      API_KEYS: '',
      CONFIG_FILE: '',
      DASHBOARD_USER: '',
      DASHBOARD_PASSWORD: '',
      DASHBOARD_TOKEN: '',
      NODE_ENV: 'development',
      PRODUCER_PORT: '0',
      WORKER_PORT: '0',
      DASHBOARD_PORT: '0',
      EMULATOR_PORT: '0',
      LOG_LEVEL: 'info',
    },
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const run = { child, output: () => output, exited };
  started.push(run as Started);
  await waitFor(() => /prompt-queue is running\./.test(output) || child.exitCode !== null, { timeoutMs: 30_000, what: 'the banner' });
  if (child.exitCode !== null) throw new Error(`start.mjs exited (${child.exitCode}):\n${output}`);
  const producer = /producer API\s+(http:\/\/\S+)/.exec(output)![1]!;
  const gemini = /Gemini\s+(http:\/\/\S+)/.exec(output)![1]!;
  const redisDir = /data in (\S+), removed on exit/.exec(output)![1]!;
  return Object.assign(run, { producer, emulator: new EmulatorClient(gemini), redisDir });
}

async function post(api: string, prompt: string): Promise<string> {
  const res = await fetch(`${api}/v1/jobs`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
}

/** Jobs whose calls are in the emulator: a warm-up first, so the worker's API key is proven. */
async function callsInFlight(stack: Started, count: number, latencyMs: number): Promise<string[]> {
  await stack.emulator.setLatency(0);
  const warmUp = await post(stack.producer, 'warm-up');
  const view = (await (await fetch(`${stack.producer}/v1/jobs/${warmUp}?wait=20`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { status: string };
  expect(view.status).toBe('completed');
  const before = (await stack.emulator.counters()).totalCalls;
  await stack.emulator.setLatency(latencyMs);
  const ids = await Promise.all(Array.from({ length: count }, (_, i) => post(stack.producer, `in flight ${i}`)));
  await waitFor(async () => (await stack.emulator.counters()).totalCalls === before + count, { timeoutMs: 15_000, what: `${count} calls in flight` });
  return ids;
}

/** The `[start] <name> stopped` lines, in order. */
const stopOrder = (output: string) => [...output.matchAll(/\[start\] (\w+) stopped/g)].map((match) => match[1]);

describe('npm start (scripts/start.mjs) and Ctrl-C', () => {
  it.skipIf(!existsSync(join(root, 'apps/worker/dist/main.js')))(
    'one Ctrl-C (SIGINT to the whole process group) drains the calls in flight, then stops Redis last',
    async () => {
      const stack = await startStack();
      const ids = await callsInFlight(stack, 8, 3_000);

      const signalled = Date.now();
      process.kill(-stack.child.pid!, 'SIGINT');
      expect(await stack.exited).toEqual({ code: 0, signal: null });
      const stoppedMs = Date.now() - signalled;
      const output = stack.output();

      // Every call in flight completed in the worker: none abandoned to stalled-job recovery.
      for (const id of ids) expect(output, id).toMatch(new RegExp(`job completed.*"jobId":"${id}"`));
      expect(output).not.toMatch(/exiting now|forced|requeued/);
      // The apps together, then the emulator, Redis last.
      const order = stopOrder(output);
      expect(order.slice(0, 3).sort()).toEqual(['dashboard', 'producer', 'worker']);
      expect(order.slice(3)).toEqual(['emulator', 'redis']);
      expect(existsSync(stack.redisDir)).toBe(false);
      expect(stoppedMs).toBeLessThan(3_000 + 5_000);
      console.log(`[start] Ctrl-C with 8 calls of 3 s in flight: all completed, stack stopped after ${stoppedMs} ms`);
    },
  );

  it.skipIf(!existsSync(join(root, 'apps/worker/dist/main.js')))(
    `a second Ctrl-C, ${SAME_STOP_REQUEST_MS} ms or more after the first, forces: the apps are killed, Redis still stops last`,
    async () => {
      const stack = await startStack();
      await callsInFlight(stack, 2, 30_000);

      process.kill(-stack.child.pid!, 'SIGINT');
      await waitFor(() => /\[start\] stopping/.test(stack.output()), { what: 'the graceful stop to begin' });
      // Not a sleep for luck: Ctrl-Cs closer than this are, by design, one (npm forwards its own).
      await new Promise((resolve) => setTimeout(resolve, SAME_STOP_REQUEST_MS + 50));
      const forcedAt = Date.now();
      process.kill(-stack.child.pid!, 'SIGINT');
      expect(await stack.exited).toEqual({ code: 1, signal: null });
      expect(Date.now() - forcedAt).toBeLessThan(5_000);
      expect(stack.output()).toMatch(/\[start\] forced: killing the apps now/);
      expect(stopOrder(stack.output()).slice(-2)).toEqual(['emulator', 'redis']);
    },
  );
});
