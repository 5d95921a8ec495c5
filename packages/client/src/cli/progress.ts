import cliProgress from 'cli-progress';

/** What the run reports, at any moment. */
export interface RunStats {
  /** Jobs (non-blank lines) in the input. */
  total: number;
  /** Lines with a result in the output, from earlier runs and this one. */
  written: number;
  /** Results of this run by outcome. */
  completed: number;
  failed: number;
  cancelled: number;
  /** Jobs whose latest event says they wait for quota, a rate limit or a budget. */
  waitingForQuota: number;
  /** Jobs of this run: finished so far, and the time the first was enqueued (epoch ms). */
  finishedThisRun: number;
  startedAt: number;
  /** Sum of this run's results' costNanoUsd. */
  costNanoUsd: number;
}

export interface ProgressReporter {
  update(stats: RunStats): void;
  /** A message above the bar (or a plain line). */
  log(message: string): void;
  stop(stats: RunStats): void;
}

export function ratePerSecond(stats: RunStats, now = Date.now()): number {
  const seconds = (now - stats.startedAt) / 1_000;
  return seconds > 0 ? stats.finishedThisRun / seconds : 0;
}

export function etaText(stats: RunStats, now = Date.now()): string {
  const rate = ratePerSecond(stats, now);
  const left = stats.total - stats.written;
  if (left <= 0) return '0s';
  if (rate <= 0) return '?';
  return duration(left / rate);
}

export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function usd(nanoUsd: number): string {
  const value = nanoUsd / 1e9;
  return `$${value < 1 ? value.toFixed(4) : value.toFixed(2)}`;
}

const number = new Intl.NumberFormat('en-US');

function fields(stats: RunStats) {
  return {
    completedN: number.format(stats.completed),
    failedN: number.format(stats.failed + stats.cancelled),
    waitingN: number.format(stats.waitingForQuota),
    rate: ratePerSecond(stats).toFixed(1),
    etaText: etaText(stats),
    cost: usd(stats.costNanoUsd),
  };
}

/**
 * A live bar on a terminal (stderr), redrawn up to 10 times a second by cli-progress. A MultiBar
 * of one bar, because its `log` prints above the bar without breaking the redraw.
 */
export class BarReporter implements ProgressReporter {
  private readonly bars: cliProgress.MultiBar;
  private bar: cliProgress.SingleBar | undefined;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.bars = new cliProgress.MultiBar(
      {
        stream,
        format: '{bar} {percentage}% {value}/{total} | done {completedN} | failed {failedN} | waiting for quota {waitingN} | {rate} jobs/s | ETA {etaText} | cost {cost}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  update(stats: RunStats): void {
    if (!this.bar) {
      this.bar = this.bars.create(stats.total, stats.written, fields(stats));
    } else {
      this.bar.setTotal(stats.total);
      this.bar.update(stats.written, fields(stats));
    }
  }

  log(message: string): void {
    this.bars.log(`${message}\n`);
  }

  stop(stats: RunStats): void {
    this.bar?.update(stats.written, fields(stats));
    this.bars.stop();
  }
}

/** Plain lines every `intervalMs` when stderr is not a terminal (CI logs, pipes). */
export class LineReporter implements ProgressReporter {
  private latest: RunStats | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    intervalMs: number,
    private readonly write: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  ) {
    this.timer = setInterval(() => this.print(), intervalMs);
    this.timer.unref();
  }

  update(stats: RunStats): void {
    this.latest = stats;
  }

  log(message: string): void {
    this.write(message);
  }

  stop(stats: RunStats): void {
    clearInterval(this.timer);
    this.latest = stats;
    this.print();
  }

  private print(): void {
    if (!this.latest) return;
    const f = fields(this.latest);
    this.write(
      `progress ${number.format(this.latest.written)}/${number.format(this.latest.total)} · done ${f.completedN} · failed ${f.failedN} · waiting for quota ${f.waitingN} · ${f.rate} jobs/s · ETA ${f.etaText} · cost ${f.cost}`,
    );
  }
}

export class SilentReporter implements ProgressReporter {
  update(): void {}
  log(message: string): void {
    process.stderr.write(`${message}\n`);
  }
  stop(): void {}
}
