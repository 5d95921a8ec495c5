#!/usr/bin/env node
// `npm start`: the whole system on one machine, no Gemini key needed.
// Builds (Turborepo skips what is up to date; `--no-build` skips the step), finds or starts Redis,
// starts the Gemini emulator unless GEMINI_API_KEY is set, then the producer, a worker and the
// dashboard. Ctrl-C stops all, gracefully: the apps first (the worker drains its in-flight jobs),
// then the emulator, Redis last. A second Ctrl-C, a second or more later, forces.
//
// Children run in process groups of their own (`detached`), so the terminal's Ctrl-C reaches this
// script only, and each child gets exactly one SIGTERM from it, in order. Had they stayed in the
// terminal's group, every child would get SIGINT from the terminal at once (redis-server and the
// emulator would exit under the draining worker) and then SIGTERM from here on top.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = { ...process.env };
const children = [];
let stopping = false;
/** Stop signals closer than this to the first are the same Ctrl-C (npm forwards its own SIGINT), ms. */
const SAME_STOP_REQUEST_MS = 1_000;
/** After SIGTERM, how long a child may take before it is killed, ms (the worker's own bound is shorter). */
const STOP_GRACE_MS = 60_000;
/** Children that are infrastructure, stopped after the apps: the emulator, then Redis last. */
const INFRASTRUCTURE = ['emulator', 'redis'];

function log(message) {
  process.stdout.write(`[start] ${message}\n`);
}

function pingRedis(url, timeoutMs = 1000) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname || '127.0.0.1', port: Number(port || 6379) });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    // Any reply counts: +PONG, or -NOAUTH from a password-protected server (the URL carries it).
    socket.on('data', (data) => done(/^(\+PONG|-NOAUTH)/.test(data.toString())));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function onPath(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Starts a process, prefixes its output, and resolves when stdout matches `ready`. */
function startChild(name, command, args, ready, extraEnv = {}) {
  const child = spawn(command, args, { cwd: root, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push({ name, child });
  const prefix = (stream, out) =>
    stream.on('data', (chunk) => {
      for (const line of chunk.toString().split('\n')) if (line.trim()) out.write(`${name.padEnd(9)}| ${line}\n`);
    });
  prefix(child.stderr, process.stderr);
  return new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk.toString();
      for (const line of chunk.toString().split('\n')) if (line.trim()) process.stdout.write(`${name.padEnd(9)}| ${line}\n`);
      const match = ready && stdout.match(ready);
      if (match) resolve(match);
    });
    child.on('exit', (code, signal) => {
      reject(new Error(`${name} exited (${code ?? signal}) before it was ready`));
      if (!stopping) {
        log(`${name} exited (${code ?? signal}); stopping everything.`);
        void stopAll(1);
      }
    });
    if (!ready) resolve(null);
  });
}

function running(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM to each child (one signal each), waits for their exit; SIGKILL after STOP_GRACE_MS. */
async function stopChildren(entries) {
  await Promise.all(
    entries.map(async ({ name, child }) => {
      if (!running(child)) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
      log(`${name} stopped`);
    }),
  );
}

async function stopAll(exitCode = 0) {
  if (stopping) return;
  stopping = true;
  log('stopping: the worker finishes its in-flight jobs first (Ctrl-C again to force)…');
  // The apps together (the worker drains while the emulator and Redis still serve it), then the
  // emulator, Redis last.
  await stopChildren(children.filter(({ name }) => !INFRASTRUCTURE.includes(name)));
  for (const name of INFRASTRUCTURE) await stopChildren(children.filter((entry) => entry.name === name));
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
  process.exit(forced ? 1 : exitCode);
}

/** A second Ctrl-C: the apps are killed (the worker's jobs come back through stalled-job recovery); Redis still stops cleanly. */
let forced = false;
function force() {
  forced = true;
  log('forced: killing the apps now');
  for (const { name, child } of children) if (!INFRASTRUCTURE.includes(name) && running(child)) child.kill('SIGKILL');
}

let firstStopAt;
function onStopSignal(signal) {
  if (firstStopAt === undefined) {
    firstStopAt = Date.now();
    log(`${signal} received`);
    void stopAll(0);
  } else if (Date.now() - firstStopAt >= SAME_STOP_REQUEST_MS) {
    force();
  }
  // Otherwise the same Ctrl-C, forwarded by npm: nothing more to do.
}

let redisDir;

async function main() {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, onStopSignal);
  // Children in their own process groups outlive this script unless told: whatever ends it (an
  // error, an unexpected exit), they get SIGTERM on the way out.
  process.on('exit', () => {
    for (const { child } of children) if (running(child)) child.kill('SIGTERM');
  });

  if (process.argv.includes('--no-build')) {
    log('--no-build: using the existing build');
  } else {
    log('building (cached steps are skipped)…');
    const build = spawnSync('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], { cwd: root, stdio: 'inherit' });
    if (build.status !== 0) {
      log('build failed; see above.');
      process.exit(1);
    }
  }

  env.REDIS_URL ??= 'redis://127.0.0.1:6379';
  if (await pingRedis(env.REDIS_URL)) {
    log(`using the Redis at ${env.REDIS_URL}`);
  } else if (onPath('redis-server')) {
    const port = await freePort();
    redisDir = mkdtempSync(join(tmpdir(), 'prompt-queue-redis-'));
    env.REDIS_URL = `redis://127.0.0.1:${port}`;
    void startChild('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''], null);
    for (let i = 0; i < 100 && !(await pingRedis(env.REDIS_URL)); i += 1) await new Promise((r) => setTimeout(r, 100));
    log(`started a private redis-server at ${env.REDIS_URL} (data in ${redisDir}, removed on exit)`);
  } else {
    log(`no Redis answers at ${env.REDIS_URL} and redis-server is not installed.`);
    log('Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),');
    log('or run one with Docker: docker run -p 6379:6379 redis:7-alpine, or set REDIS_URL.');
    process.exit(1);
  }

  if (!env.GEMINI_API_KEY) {
    const [, url] = await startChild('emulator', process.execPath, ['packages/gemini-emulator/dist/main.js'], /listening on (http:\/\/\S+)/, {
      EMULATOR_PORT: env.EMULATOR_PORT ?? '0',
    });
    env.GEMINI_API_KEY = 'emulator-key';
    env.GEMINI_BASE_URL = url;
    log(`no GEMINI_API_KEY: using the Gemini emulator at ${url}`);
  }

  const [, producerUrl] = await startChild('producer', process.execPath, ['apps/producer/dist/main.js'], /listening on (http:\/\/\S+)/);
  const [, workerUrl] = await startChild('worker', process.execPath, ['apps/worker/dist/main.js'], /listening on (http:\/\/\S+)/);
  // The dashboard has no anonymous mode: without credentials of your own, use a password for this run.
  let dashboardLogin = 'your DASHBOARD_USER / DASHBOARD_PASSWORD';
  if (!env.DASHBOARD_USER && !env.DASHBOARD_PASSWORD && !env.DASHBOARD_TOKEN && !env.CONFIG_FILE) {
    env.DASHBOARD_USER = 'admin';
    env.DASHBOARD_PASSWORD = randomBytes(18).toString('base64url');
    dashboardLogin = `user admin, password ${env.DASHBOARD_PASSWORD} (generated for this run)`;
  } else if (!env.DASHBOARD_USER && !env.DASHBOARD_PASSWORD) {
    dashboardLogin = 'see CONFIG_FILE / DASHBOARD_TOKEN (or the password the dashboard printed above)';
  }
  const [, dashboardUrl] = await startChild('dashboard', process.execPath, ['apps/dashboard/dist/main.js'], /listening on (http:\/\/\S+)/);

  const key = env.API_KEYS ? '<your key>' : 'dev-key';
  process.stdout.write(`
prompt-queue is running.
  producer API   ${producerUrl}
  dashboard      ${dashboardUrl}        (queues at ${dashboardUrl}/queues)
                 login: ${dashboardLogin}
  worker health  ${workerUrl}/healthz
  Gemini         ${env.GEMINI_BASE_URL ?? 'https://generativelanguage.googleapis.com'}

Try it:
  curl -s -X POST ${producerUrl}/v1/jobs -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' \\
       -d '{"prompt":"Write a haiku about queues"}'
  curl -s '${producerUrl}/v1/jobs/<id>?wait=10' -H 'Authorization: Bearer ${key}'

Ctrl-C stops everything (the worker finishes its in-flight calls first; Ctrl-C again to force).
`);
}

main().catch((error) => {
  log(error.message);
  void stopAll(1);
});
