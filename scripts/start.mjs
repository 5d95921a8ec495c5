#!/usr/bin/env node
// `npm start`: the whole system on one machine, no Gemini key needed.
// Builds (Turborepo skips what is up to date), finds or starts Redis, starts the Gemini emulator
// unless GEMINI_API_KEY is set, then the producer, a worker and the dashboard. Ctrl-C stops all.
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
  const child = spawn(command, args, { cwd: root, env: { ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
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

async function stopAll(exitCode = 0) {
  if (stopping) return;
  stopping = true;
  log('stopping…');
  // Reverse order: apps first (the worker finishes in-flight jobs), Redis last.
  for (const { name, child } of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
    log(`${name} stopped`);
  }
  if (redisDir) rmSync(redisDir, { recursive: true, force: true });
  process.exit(exitCode);
}

let redisDir;

async function main() {
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  log('building (cached steps are skipped)…');
  const build = spawnSync('npx', ['turbo', 'run', 'build', '--output-logs=errors-only'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) {
    log('build failed; see above.');
    process.exit(1);
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

Ctrl-C stops everything.
`);
}

main().catch((error) => {
  log(error.message);
  void stopAll(1);
});
