// `npm run bench`: runs every bench script (each in its own process, bounded in time), prints one
// markdown table (figure, baseline measured in the same run, ratio, target) and writes it to
// docs/benchmarks.md with the date, machine and commit.
//   --smoke        tiny sizes (CI: keeps the scripts from rotting); writes to a temp file, never docs/
//   --only=a,b     run only these benches (names below); writes to a temp file
//   --out=<file>   write the report there instead
// Needs the build (`npm run build`) and redis-server on PATH.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const only = args.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const outArg = args.find((a) => a.startsWith('--out='))?.slice(6);

/** name, script, extra args, time limit (full / smoke), seconds. */
const BENCHES = [
  { name: 'overhead', script: 'overhead.mjs', limit: [210, 60] },
  // Smoke runs the quota script once (4 workers): the 1-worker run is the same code.
  { name: 'quota-1', script: 'quota.mjs', args: ['--workers=1'], limit: [180, 60], fullOnly: true },
  { name: 'quota-4', script: 'quota.mjs', args: ['--workers=4'], limit: [180, 60] },
  // Tokenizers, latencies and limits we did not choose: 16 cells, each beside the naive baseline.
  { name: 'quota-matrix', script: 'quota-matrix.mjs', limit: [1500, 150] },
  { name: 'latency', script: 'latency.mjs', limit: [180, 60] },
  { name: 'scale', script: 'scale.mjs', limit: [180, 90] },
  { name: 'producer', script: 'producer.mjs', limit: [150, 60] },
  { name: 'memory', script: 'memory.mjs', limit: [300, 60] },
  // One process at concurrency 256, 1,024 and 4,096, provider latency 2 s ± 1 s, beside a raw BullMQ worker.
  { name: 'capacity', script: 'capacity.mjs', limit: [480, 60] },
];

for (const file of ['apps/worker/dist/main.js', 'apps/producer/dist/main.js', 'packages/gemini-emulator/dist/main.js', 'packages/shared/dist/testing/index.js']) {
  try {
    readFileSync(join(ROOT, file));
  } catch {
    console.error(`${file} is missing: run \`npm run build\` first.`);
    process.exit(1);
  }
}

const selected = BENCHES.filter((b) => (only ? only.includes(b.name) : !(smoke && b.fullOnly)));
if (selected.length === 0) {
  console.error(`no bench matches --only; known: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(1);
}

const scratch = mkdtempSync(join(tmpdir(), 'pq-bench-run-'));
const startedAt = new Date();
const loadAtStart = loadavg();
const t0 = performance.now();
const results = [];
let current;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (current) killGroup(current);
    rmSync(scratch, { recursive: true, force: true });
    process.exit(130);
  });
}

for (const bench of selected) {
  const out = join(scratch, `${bench.name}.json`);
  const limitS = bench.limit[smoke ? 1 : 0];
  console.error(`\n== ${bench.name}${smoke ? ' (smoke)' : ''}, limit ${limitS} s`);
  const started = performance.now();
  const { code, timedOut } = await runChild(bench, out, limitS);
  const seconds = (performance.now() - started) / 1000;
  let result;
  try {
    result = JSON.parse(readFileSync(out, 'utf8'));
  } catch {
    result = { bench: bench.name, rows: [], error: timedOut ? `timed out after ${limitS} s` : `exited with ${code} without a result` };
  }
  if (timedOut && !result.error) result.error = `timed out after ${limitS} s`;
  result.seconds = seconds;
  result.name = bench.name;
  results.push(result);
  console.error(`== ${bench.name}: ${result.error ? `FAILED: ${result.error.split('\n')[0]}` : 'ok'} (${seconds.toFixed(1)} s)`);
}
rmSync(scratch, { recursive: true, force: true });
const totalSeconds = (performance.now() - t0) / 1000;

const report = render();
console.log(`\n${report}`);
const target = outArg ?? (smoke || only ? join(tmpdir(), `prompt-queue-bench${smoke ? '-smoke' : ''}.md`) : join(ROOT, 'docs/benchmarks.md'));
writeFileSync(target, report);
console.error(`\nwritten to ${target} (${totalSeconds.toFixed(0)} s in all)`);
process.exit(results.some((r) => r.error) ? 1 : 0);

// ---------------------------------------------------------------------------------------------

function runChild(bench, out, limitS) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'bench', bench.script), ...(bench.args ?? []), `--out=${out}`, ...(smoke ? ['--smoke'] : [])], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      // Its own process group: on a timeout the bench and everything it started go together.
      detached: true,
    });
    current = child;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // SIGTERM lets the bench stop its children and Redis; SIGKILL the group if it does not.
      killGroup(child, 'SIGTERM');
      setTimeout(() => killGroup(child, 'SIGKILL'), 10_000).unref();
    }, limitS * 1000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      current = undefined;
      resolve({ code, timedOut });
    });
  });
}

function killGroup(child, signal = 'SIGKILL') {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function git(...gitArgs) {
  try {
    return execFileSync('git', gitArgs, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

function cell(text) {
  return String(text).replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function render() {
  const commit = git('rev-parse', '--short', 'HEAD') || 'unknown';
  const dirty = git('status', '--porcelain', '--', 'apps', 'packages', 'bench') !== '';
  const cpu = cpus();
  const lines = [];
  lines.push(`# Benchmarks${smoke ? ' (smoke run: tiny sizes, figures not meaningful)' : ''}`);
  lines.push('');
  lines.push('Generated by `npm run bench` (bench/run.mjs); do not edit by hand. Every baseline is measured in the same run, on the same machine and Redis, next to its figure.');
  lines.push('');
  lines.push(`- Date: ${startedAt.toISOString().replace('T', ' ').slice(0, 16)} UTC; ${totalSeconds.toFixed(0)} s in all`);
  lines.push(`- Machine: ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}; load average at start ${loadAtStart.map((l) => l.toFixed(1)).join(' / ')} (1/5/15 min)`);
  lines.push(`- Node ${process.version}, ${redisVersion()}, bullmq ${pkgVersion('bullmq')}`);
  lines.push(`- Commit: ${commit}${dirty ? ' plus uncommitted changes in apps/, packages/ or bench/' : ''}`);
  lines.push('');
  lines.push('| Bench | Measure | Figure | Baseline (same run) | Ratio | Target | Met |');
  lines.push('|---|---|---|---|---|---|---|');
  const notes = [];
  for (const result of results) {
    if (result.error) {
      lines.push(`| ${cell(result.name)} | **failed**: ${cell(result.error.split('\n')[0])} | — | — | — | — | ✗ |`);
      continue;
    }
    for (const r of result.rows) {
      const met = r.met === null ? '—' : r.met ? '✓' : '✗ missed';
      lines.push(`| ${cell(r.bench)} | ${cell(r.name)} | ${cell(r.figure)} | ${cell(r.baseline)} | ${cell(r.ratio)} | ${cell(r.target)} | ${met} |`);
      if (r.note) notes.push(`- ${r.bench} — ${r.name}: ${r.note}`);
    }
  }
  lines.push('');
  if (notes.length > 0) {
    lines.push('Notes from the run:');
    lines.push('');
    lines.push(...notes);
    lines.push('');
  }
  lines.push('Time per bench: ' + results.map((r) => `${r.name} ${r.seconds.toFixed(0)} s`).join(', ') + '.');
  lines.push('');
  lines.push(method());
  return lines.join('\n');
}

function redisVersion() {
  try {
    const text = execFileSync(process.env.REDIS_SERVER_BIN ?? 'redis-server', ['--version'], { encoding: 'utf8' });
    return `Redis ${/v=(\S+)/.exec(text)?.[1] ?? '?'}`;
  } catch {
    return 'Redis ?';
  }
}

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

function method() {
  return `## How each figure is measured

Run it yourself: \`npm run build && npm run bench\` (about 12 minutes; \`npm run bench -- --smoke\` runs tiny
sizes in about a minute and a half and writes to a temp file; \`--only=overhead,latency\` runs a subset).
Each bench is a script under \`bench/\` run in its own process with a time limit; it starts its own
private \`redis-server\` (no persistence) and the Gemini emulator, runs the built worker
(\`apps/worker/dist/main.js\`) and producer as real processes, and removes everything afterwards.
Jobs are added the way the producer adds them (payload v1, its job options, fair priorities); every
prompt is unique, so every job is a response-cache miss. Workers run with \`NODE_ENV=test\`,
\`LOG_LEVEL=warn\`, the audit log to a file, and their default concurrency (64) and batching (16 / 20 ms).

- **Overhead** (\`bench/overhead.mjs\`): one worker process drains a backlog of jobs; throughput is
  counted from the moment 10% of the jobs are done to the last one. The baseline is one raw BullMQ
  \`Worker\` process (\`bench/raw-worker.mjs\`, same concurrency) whose processor returns at once,
  on the same jobs. Rounds alternate the order; the median round counts. The worker's provider is the
  emulator (a separate process, 0 ms latency) over loopback HTTP through the Gemini SDK, which is
  stricter than an in-process zero-latency provider: every job still pays an HTTP round trip and
  JSON on both sides, and the emulator takes CPU from the same cores. Limits are configured (far
  above the run) so the fleet limiter reserves and settles every batch in Redis.
- **Quota goodput** (\`bench/quota.mjs\`): N worker processes share one quota of the emulator
  (in-process in the bench, rolling window, rejected calls consume nothing, as Google counts). Time
  is compressed: the window is 30 s on both sides (emulator \`windowMs\`, worker
  \`LIMITER_WINDOW_MS\`), so a run of two windows fits the time budget; the worker's guard stays at
  its default 500 ms, which costs 1.6% of a 30 s window (0.8% at Google's 60 s): the ceiling is
  98.4%, not 100%. Every process first serves a few jobs of an unlimited model (warm-up), then the
  emulator is reset and the backlog added. Prompts are 40–360 input tokens (mean 200), so TPM binds
  before RPM. Share = the time-averaged fill of the provider's rolling window (from the log of
  accepted calls: each call counts its input tokens for the 30 s it stays in the window) over the
  second window, divided by the quota; the first window starts empty and would give any client a
  free burst. This is independent of how the traffic is phased (bursts at each window start or a
  steady flow). 429 share = 429 answers / all provider calls over the whole run. The naive baseline, in the same invocation with the same N and jobs: raw
  BullMQ workers with BullMQ's job-count limiter (\`limiter: { max: RPM, duration: window }\`) calling
  the emulator with \`@google/generative-ai\`; a 429 throws and BullMQ retries it (10 attempts,
  exponential backoff from 1 s scaled to the window). The naive share swings widely from run to
  run (its retries come back in backoff waves, so one window may be full or nearly idle); its 429
  share is the stable figure.
- **Quota matrix** (\`bench/quota-matrix.mjs\`): the quota promise under conditions we did not
  choose. 16 cells: the emulator's tokenizer {English at 4 ASCII characters a token; code at 3;
  Japanese at 1 token a character; English switching to Japanese halfway through the backlog} ×
  call latency {20–60 ms; 2 s ± 1 s} × limits {configured: \`GEMINI_RPM\`/\`GEMINI_TPM\` = the
  quota; unknown: nothing configured}, 4 worker processes each. The estimator starts every cell
  from nothing (fresh prefix), so the first window pays its high prior. Ours and the naive baseline
  (as above; with limits unknown it has no BullMQ limiter, only retry-on-429) run at the same time
  on two models with the same quota in one emulator, so both meet the same machine. Window 20 s
  on both sides (the 500 ms guard then costs 2.4%; calls of 2 s are 10% of the window, against 3%
  at Google's 60 s, so in-flight margins cost about three times what they would in production).
  The backlog is 2.5 windows of quota (prompts 40–160 tokens, mean 100; TPM binds). Share = the
  time-averaged fill of the binding quota over the second window (as above); 429s over the whole
  run and after the first window; done = time to finish the backlog against the physical minimum
  (the first window's quota at once, one more each window: 2 windows plus a call).
- **Latency** (\`bench/latency.mjs\`): one job at a time on an idle queue, 5–20 ms apart; per job
  \`finishedOn − timestamp − result.latencyMs\` (BullMQ's enqueue and completion times, minus the
  provider call as the worker timed it). Baseline: the same measure for the raw no-op BullMQ worker
  (provider time 0). Both ends use the same clock; BullMQ timestamps are whole milliseconds.
- **Horizontal scale** (\`bench/scale.mjs\`): 1, 2, then 4 worker processes on a backlog that cannot
  run out, emulator latency 100 ms, no quota; completions counted over a fixed interval after a
  warm-up. CPU use during the interval is shown beside each figure, for the whole machine and for
  the workers plus emulator: all processes (workers, emulator, Redis, bench) share the same cores,
  and on a shared machine the gap between the two is mostly other tenants.
- **Producer** (\`bench/producer.mjs\`): closed-loop clients for a fixed time after a warm-up;
  \`POST /v1/jobs\` with 32 requests in flight vs \`queue.add\` with 32 in flight, and
  \`POST /v1/jobs/bulk\` of 500 jobs with 4 in flight vs \`queue.addBulk\` of 500 with 4 in flight.
  Same Redis, same payload and job options; the raw side skips validation, fair priorities and HTTP.
  The HTTP client (Node's fetch) runs in the bench process on the same cores. Two rounds each,
  alternating, averaged.
- **Memory** (\`bench/memory.mjs\`): VmRSS of the worker process (\`/proc/<pid>/status\`, median of 5
  samples once the queue is drained) after the warm-up jobs and again after the run; growth =
  after / before − 1, peak during the run beside it. The run is capped in time; the row names the
  number of jobs that went through.
- **Capacity** (\`bench/capacity.mjs\`): how many slow calls ONE worker process keeps in flight.
  Emulator latency 2 s ± 1 s (1 s plus a uniform jitter of 0–2 s), no quota (limits configured far
  above the run, so the limiter reserves and settles every batch but never binds), one worker at
  concurrency 256, 1,024 and 4,096 (batch size 16), on a backlog a feeder keeps topped up;
  completions counted over 30 s after an 8 s warm-up. jobs/s against the ideal concurrency ÷ 2 s;
  CPU per job = the worker process's utime + stime (\`/proc/<pid>/stat\`) over the interval ÷ jobs;
  peak VmRSS sampled every 250 ms from start to end. Baseline, same run and emulator: a raw BullMQ
  \`Worker\` process at the same concurrency making the same \`@google/generative-ai\` call
  (\`bench/raw-worker.mjs\`, RAW_MODE=provider), without batching, limiter, cache or job-end
  recording. On a busy machine both are bound by the CPU share they get: compare CPU per job.
  Both processes run with the heap cap the Helm chart gives a worker (\`worker.maxHeapMiB\`, 256 MiB,
  as \`NODE_OPTIONS=--max-old-space-size\`), concurrency ÷ 4 MiB above 1,024; without one, Node
  sizes its heap from this machine's 24 GiB and RSS measures uncollected garbage
  (\`node bench/capacity.mjs --heap=default\` shows it).
`;
}
