// Quota truth: does the fleet hold a shared quota when the provider disagrees with every assumption
// we could make? A matrix of conditions, each cell against the naive baseline in the same run:
//   tokenizer  english (4 ASCII chars a token, English prose), code (3 chars a token, source code),
//              cjk (≈ 1 token a character, Japanese), mix (English, switching to Japanese halfway)
//   latency    fast (20-60 ms calls) or slow (2 s ± 1 s)
//   limits     configured (GEMINI_RPM/TPM = the quota) or unknown (nothing configured)
// 4 worker processes per variant. The emulator's tokenizer is set per cell and is never the
// estimator's prior; the estimator starts each cell from nothing (a fresh Redis prefix).
//
// Both variants run AT THE SAME TIME on two models with the same quota (the emulator counts per
// model), so a cell costs one run: ours on `gemini-3.6-flash`, the baseline on `gemini-3.5-flash`.
// Baseline: raw BullMQ workers calling the SDK, retry-on-429 through job attempts with exponential
// backoff; with limits configured, BullMQ's job-count limiter at the RPM (it cannot count tokens).
//
// Figures per cell, from the emulator's own log of answers (arrival time, status, tokens):
//   share  the time-averaged fill of the binding quota over the measured window (the second one;
//          the backlog of 2.5 windows keeps it saturated), as in quota.mjs
//   429s   share of calls answered 429 over the whole run, and with the first window excluded
//   done   time to finish the backlog against the physical minimum: (⌈backlog / quota⌉ − 1)
//          windows plus one call (a fresh window admits one quota at once, each later one a window later)
// Time is compressed: the emulator's and the limiter's window are 20 s (smoke: 4 s).
import {
  createEmulator, enqueueJobs, fmt, log, openQueue, redisClient, row, runBench, serveEmulatorWithLog, sleep, startRawWorkers,
  startRedis, startWorkers, stopAll, uniquePrefix, workerEnv,
} from './lib.mjs';

const OURS = 'gemini-3.6-flash';
const NAIVE = 'gemini-3.5-flash';

/** Prompt text of about `tokens` tokens under its own cell's tokenizer, unique per seed. */
const TEXT = {
  english: (seed, tokens) => fill(`Summary ${seed}: `, ' the queue keeps every job safe and sends it when the quota allows', tokens * 4),
  code: (seed, tokens) => fill(`// job ${seed}\n`, ' const total = items.map((x) => x.price * x.qty).reduce((a, b) => a + b, 0);', tokens * 3),
  cjk: (seed, tokens) => fill(`要約${seed}：`, 'キューは全ての仕事を安全に保ち、割り当てが許す時に送ります。', tokens),
};
const TOKENIZERS = {
  english: { tokenizer: { asciiCharsPerToken: 4, nonAsciiTokensPerChar: 1 }, text: (seed, tokens) => TEXT.english(seed, tokens) },
  code: { tokenizer: { asciiCharsPerToken: 3, nonAsciiTokensPerChar: 1 }, text: (seed, tokens) => TEXT.code(seed, tokens) },
  cjk: { tokenizer: { asciiCharsPerToken: 4, nonAsciiTokensPerChar: 1 }, text: (seed, tokens) => TEXT.cjk(seed, tokens) },
  // English for the first half of the backlog, Japanese after: the tenant's mix changes mid-run.
  mix: { tokenizer: { asciiCharsPerToken: 4, nonAsciiTokensPerChar: 1 }, text: (seed, tokens, i, n) => (i < n / 2 ? TEXT.english : TEXT.cjk)(seed, tokens) },
};
const LATENCIES = { fast: { latencyMs: 20, jitterMs: 40, label: '20-60 ms' }, slow: { latencyMs: 1_000, jitterMs: 2_000, label: '2 s ± 1 s' } };

function fill(head, unit, chars) {
  let text = head;
  while (text.length < chars) text += unit;
  return text.slice(0, Math.max(head.length + 1, chars));
}

await runBench('quota-matrix', async ({ smoke, workers: workersArg, window: windowArg, cells: cellsArg }) => {
  const workers = Number(workersArg ?? (smoke ? 2 : 4));
  const windowMs = Number(windowArg ?? (smoke ? 4_000 : 20_000));
  const tpm = smoke ? 4_000 : 24_000; // per window: ~40 (smoke) / ~240 calls of 100 tokens
  const rpm = smoke ? 80 : 480; // twice what TPM allows: TPM binds
  const tokensOf = (i) => 40 + ((i * 7919) % 121); // 40..160, mean 100
  const backlog = Math.ceil((2.5 * tpm) / 100);
  const cells = [];
  for (const tokenizer of Object.keys(TOKENIZERS)) for (const latency of Object.keys(LATENCIES)) for (const limits of ['configured', 'unknown']) cells.push({ tokenizer, latency, limits });
  const selected = cellsArg ? cells.filter((c) => String(cellsArg).split(',').includes(`${c.tokenizer}-${c.latency}-${c.limits}`))
    : smoke ? cells.filter((c) => (c.tokenizer === 'mix' && c.latency === 'slow') || (c.tokenizer === 'code' && c.latency === 'fast' && c.limits === 'configured'))
    : cells;

  const redis = await startRedis();
  const client = redisClient(redis.url);
  const emulator = createEmulator({ windowMs, quotas: { [OURS]: { rpm, tpm }, [NAIVE]: { rpm, tpm } } });
  let answers = [];
  const emulatorUrl = await serveEmulatorWithLog(emulator, (answer) => answers.push(answer));

  /** Time-averaged window fill of `model`'s accepted calls over [from, to]. */
  const fillOf = (model, from, to, value) => {
    let integral = 0;
    for (const a of answers) {
      if (a.model !== model || a.status !== 200) continue;
      const overlap = Math.min(a.at + windowMs, to) - Math.max(a.at, from);
      if (overlap > 0) integral += value(a) * overlap;
    }
    return integral / (to - from);
  };

  async function runCell(cell) {
    const { tokenizer, text } = TOKENIZERS[cell.tokenizer];
    const latency = LATENCIES[cell.latency];
    emulator.setTokenizer(tokenizer);
    emulator.setLatency(latency.latencyMs, latency.jitterMs);
    emulator.reset();
    answers = [];
    const prefixes = { ours: uniquePrefix('qm'), naive: uniquePrefix('qn') };
    const configured = cell.limits === 'configured';
    const ours = await startWorkers(workers, workerEnv({
      redisUrl: redis.url,
      prefix: prefixes.ours,
      emulatorUrl,
      extra: { LIMITER_WINDOW_MS: String(windowMs), GEMINI_MODEL: OURS, ...(configured ? { GEMINI_RPM: String(rpm), GEMINI_TPM: String(tpm) } : {}) },
    }));
    const backoffMs = Math.round((1_000 * windowMs) / 60_000);
    const naive = await startRawWorkers(workers, workerEnv({
      redisUrl: redis.url,
      prefix: prefixes.naive,
      emulatorUrl,
      extra: { RAW_MODE: 'naive', ...(configured ? { RAW_LIMIT_MAX: String(rpm), RAW_LIMIT_DURATION_MS: String(windowMs) } : {}) },
    }));
    const queues = { ours: openQueue(client, prefixes.ours), naive: openQueue(client, prefixes.naive) };
    const t0 = Date.now();
    const promptOf = (i) => text(`${cell.tokenizer}-${i}-${t0}`, tokensOf(i), i, backlog);
    await Promise.all([
      enqueueJobs(queues.ours, client, prefixes.ours, backlog, { text: promptOf, model: OURS }),
      enqueueJobs(queues.naive, client, prefixes.naive, backlog, {
        text: promptOf,
        model: NAIVE,
        options: (jobId, priority) => ({ jobId, priority, attempts: 20, backoff: { type: 'exponential', delay: backoffMs } }),
      }),
    ]);
    // Both finish, or a limit of 6 windows (the naive baseline may not).
    const doneAt = { ours: undefined, naive: undefined };
    while (Date.now() - t0 < 6 * windowMs && (!doneAt.ours || !doneAt.naive)) {
      for (const variant of ['ours', 'naive']) {
        if (doneAt[variant]) continue;
        const counts = await queues[variant].getJobCounts('completed', 'failed');
        if (counts.completed + counts.failed >= backlog) doneAt[variant] = Date.now();
      }
      await sleep(100);
    }
    const end = Date.now();
    await stopAll([...ours, ...naive]);
    const failed = {};
    for (const variant of ['ours', 'naive']) {
      failed[variant] = (await queues[variant].getJobCounts('failed')).failed;
      await queues[variant].close();
    }
    // Physical minimum: the first window's quota at once, then one quota per window, plus a call.
    const physicalMs = (Math.ceil(2.5) - 1) * windowMs + latency.latencyMs + latency.jitterMs;
    const measure = (model, variant) => {
      const calls = answers.filter((a) => a.model === model);
      const late = calls.filter((a) => a.at >= t0 + windowMs);
      const n429 = calls.filter((a) => a.status === 429).length;
      const late429 = late.filter((a) => a.status === 429).length;
      const from = t0 + windowMs;
      const to = Math.min(t0 + 2 * windowMs, end);
      const tokenShare = to > from ? fillOf(model, from, to, (a) => a.tokens) / tpm : 0;
      const callShare = to > from ? fillOf(model, from, to, () => 1) / rpm : 0;
      return {
        share: Math.max(tokenShare, callShare),
        rate429: calls.length ? n429 / calls.length : 0,
        n429,
        calls: calls.length,
        late429Rate: late.length ? late429 / late.length : 0,
        late429,
        late: late.length,
        doneMs: doneAt[variant] ? doneAt[variant] - t0 : undefined,
        physicalMs,
        failed: failed[variant],
      };
    };
    const result = { cell, ours: measure(OURS, 'ours'), naive: measure(NAIVE, 'naive') };
    if (process.env.BENCH_DEBUG) {
      const buckets = new Map();
      for (const a of answers.filter((x) => x.model === OURS)) {
        const b = Math.floor((a.at - t0) / 1000);
        const v = buckets.get(b) ?? { ok: 0, r: 0, tok: 0 };
        if (a.status === 200) { v.ok++; v.tok += a.tokens; } else v.r++;
        buckets.set(b, v);
      }
      log('ours per second', [...buckets.entries()].sort((x, y) => x[0] - y[0]).map(([b, v]) => `${b}s:${v.ok}/${v.r}/${v.tok}`).join(' '));
    }
    log(`quota-matrix ${cell.tokenizer}/${cell.latency}/${cell.limits}: ${JSON.stringify(result)}`);
    await client.flushall();
    return result;
  }

  const results = [];
  for (const cell of selected) results.push(await runCell(cell));

  const done = (m) => (m.doneMs === undefined ? `not done in ${(6 * windowMs) / 1000} s` : `${(m.doneMs / 1000).toFixed(1)} s`);
  return results.map(({ cell, ours, naive }) => {
    const configured = cell.limits === 'configured';
    const met = configured ? ours.rate429 <= 0.01 && ours.share >= 0.95 : ours.late429Rate <= 0.01 && ours.doneMs !== undefined && ours.doneMs <= ours.physicalMs + windowMs;
    return row({
      bench: 'Quota matrix',
      name: `${cell.tokenizer} tokenizer, ${LATENCIES[cell.latency].label} calls, limits ${cell.limits} (${workers} workers)`,
      figure:
        `share ${fmt.pct(ours.share)}; 429s ${fmt.pct(ours.rate429, 1)} (${ours.n429}/${ours.calls}), after window 1 ${fmt.pct(ours.late429Rate, 1)}; ` +
        `done ${done(ours)}`,
      baseline:
        `share ${fmt.pct(naive.share)}; 429s ${fmt.pct(naive.rate429, 1)} (${naive.n429}/${naive.calls}), after window 1 ${fmt.pct(naive.late429Rate, 1)}; ` +
        `done ${done(naive)}, ${naive.failed} failed`,
      ratio: naive.share > 0 ? fmt.x(ours.share / naive.share) : '—',
      target: configured ? '429s ≤ 1%, share ≥ 95%' : '429s after window 1 ≤ 1%, done ≤ minimum + 1 window',
      met,
      note: `${(windowMs / 1000).toFixed(0)} s windows, ${tpm.toLocaleString('en-US')} tokens + ${rpm} requests each; minimum ${(ours.physicalMs / 1000).toFixed(1)} s`,
    });
  });
});
