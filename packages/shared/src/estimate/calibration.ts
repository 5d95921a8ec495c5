import { FEATURE_NAMES, type PromptFeatures } from './features.js';

/**
 * The calibrated token estimate, as pure math: a linear model `tokens ≈ θ · features` fitted by
 * exponentially-weighted ridge regression toward a deliberately high prior, plus a safety margin
 * from the spread of its own past errors. The fleet shares the sufficient statistics in Redis
 * (calibration-store.ts); this module only turns them into an estimate.
 *
 * Why this shape:
 * - A fixed characters-per-token ratio is wrong for some tenant (code, CJK, digits). The weights
 *   per feature are learned from what the provider counted (`promptTokenCount`).
 * - Ridge toward a high prior: a feature the fleet has not seen (the first Japanese prompt after a
 *   day of English) is priced at the prior, which errs high, and data pulls it down as it comes.
 * - Exponential forgetting: when a tenant's mix changes, old samples fade and the fit follows.
 * - The margin is measured, not guessed: the token-weighted bias and spread of the estimate's
 *   errors, measured out of sample (each call's error against the estimate it was reserved with).
 *   It only costs quota while a call is in flight: settle replaces the reservation by the truth.
 */

export const FEATURES = FEATURE_NAMES.length;

/** Tokens per unit of each feature before any sample: high on purpose (never low for known tokenizers). */
export const PRIOR_WEIGHTS: readonly number[] = [
  0.5, // ASCII: 2 characters a token (English ≈ 4, code ≈ 3, digit runs lower)
  1.5, // other characters: CJK ≈ 1–1.3 tokens a character
  1.25, // image tokens by the published rule
  1, // per part: rounding and separators
];

/**
 * How strongly the prior holds, as "samples of a typical size" per feature: the ridge penalty of
 * feature j is PRIOR_SAMPLES × scale_j². A feature with that much data is half prior, half data.
 */
const PRIOR_SAMPLES = 2;
const FEATURE_SCALES: readonly number[] = [800, 300, 258, 1];

/** Margin bounds: the floor covers rounding noise, the cold-start floor covers the first samples. */
export const MIN_MARGIN = 0.05;
export const COLD_MARGIN = 0.3;
export const MAX_MARGIN = 2;
/** Token-weighted samples (in units of the mean prediction) below which the fit is "cold". */
const COLD_SAMPLES = 20;
/** Standard deviations of the relative error covered by the margin. */
const SPREAD_FACTOR = 2;

/**
 * Decayed sufficient statistics of one scope. `xx` is the upper triangle of Σ w·x·xᵀ row by row,
 * `xy` is Σ w·x·y; the residual sums are weighted by the estimate (so they measure tokens, not calls):
 * `rw` = Σ w·p, `r1` = Σ w·(y − p), `r2` = Σ w·(y − p)²/p, `n` = Σ w.
 */
export interface CalibrationStats {
  n: number;
  xx: number[];
  xy: number[];
  rw: number;
  r1: number;
  r2: number;
}

export interface Calibration {
  /** Tokens per unit of each feature, in FEATURE_NAMES order. */
  weights: number[];
  /** Relative safety margin applied on top of the prediction. */
  margin: number;
  /** Effective (decayed) number of samples behind the fit. */
  samples: number;
  /** Token-weighted mean relative error of past estimates (before margin): > 0 means they were low. */
  bias: number;
  /** Token-weighted standard deviation of that relative error. */
  spread: number;
}

export const UPPER_TRIANGLE = (FEATURES * (FEATURES + 1)) / 2;

export function emptyStats(): CalibrationStats {
  return { n: 0, xx: new Array<number>(UPPER_TRIANGLE).fill(0), xy: new Array<number>(FEATURES).fill(0), rw: 0, r1: 0, r2: 0 };
}

export function featureVector(features: PromptFeatures): number[] {
  return FEATURE_NAMES.map((name) => features[name]);
}

/** The estimate before any sample: the prior with the cold-start margin. */
export const PRIOR_CALIBRATION: Calibration = { weights: [...PRIOR_WEIGHTS], margin: COLD_MARGIN, samples: 0, bias: 0, spread: 0 };

/** Fits the weights and the margin from the statistics. */
export function calibrate(stats: CalibrationStats): Calibration {
  // (Σ w x xᵀ + Λ) θ = Σ w x y + Λ θ₀, with Λ = diag(PRIOR_SAMPLES · scale²).
  const a: number[][] = [];
  const b: number[] = [];
  let k = 0;
  for (let i = 0; i < FEATURES; i++) a.push(new Array<number>(FEATURES).fill(0));
  for (let i = 0; i < FEATURES; i++) {
    for (let j = i; j < FEATURES; j++) {
      const value = stats.xx[k++] ?? 0;
      a[i]![j] = value;
      a[j]![i] = value;
    }
  }
  for (let i = 0; i < FEATURES; i++) {
    const penalty = PRIOR_SAMPLES * FEATURE_SCALES[i]! ** 2;
    a[i]![i]! += penalty;
    b.push((stats.xy[i] ?? 0) + penalty * PRIOR_WEIGHTS[i]!);
  }
  const solved = solve(a, b);
  // A negative weight would price some prompt below zero; a failed solve keeps the prior.
  const weights = solved ? solved.map((w) => (Number.isFinite(w) ? Math.max(0, w) : 0)) : [...PRIOR_WEIGHTS];

  const bias = stats.rw > 0 ? stats.r1 / stats.rw : 0;
  const spread = stats.rw > 0 ? Math.sqrt(Math.max(0, stats.r2 / stats.rw - bias * bias)) : 0;
  const meanPrediction = stats.n > 0 ? stats.rw / stats.n : 0;
  const samples = stats.n;
  const warm = meanPrediction > 0 && samples >= COLD_SAMPLES;
  const measured = bias + SPREAD_FACTOR * spread;
  const margin = Math.min(MAX_MARGIN, Math.max(warm ? MIN_MARGIN : COLD_MARGIN, measured));
  return { weights, margin, samples, bias, spread };
}

/** θ · x: the expected count, before the margin. */
export function predictTokens(calibration: Calibration, features: PromptFeatures): number {
  const x = featureVector(features);
  let sum = 0;
  for (let i = 0; i < FEATURES; i++) sum += calibration.weights[i]! * x[i]!;
  return sum;
}

/** Tokens to reserve: the prediction plus the margin, rounded up; at least 1 for a non-empty prompt. */
export function reserveTokens(calibration: Calibration, features: PromptFeatures): { predicted: number; reserve: number } {
  const predicted = predictTokens(calibration, features);
  const reserve = Math.ceil(predicted * (1 + calibration.margin));
  return { predicted, reserve: features.parts > 0 ? Math.max(1, reserve) : reserve };
}

/** Gaussian elimination with partial pivoting; undefined when the system is singular. */
function solve(a: number[][], b: number[]): number[] | undefined {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let row = col + 1; row < n; row++) if (Math.abs(m[row]![col]!) > Math.abs(m[pivot]![col]!)) pivot = row;
    if (Math.abs(m[pivot]![col]!) < 1e-12) return undefined;
    [m[col], m[pivot]] = [m[pivot]!, m[col]!];
    for (let row = col + 1; row < n; row++) {
      const factor = m[row]![col]! / m[col]![col]!;
      for (let k = col; k <= n; k++) m[row]![k]! -= factor * m[col]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let row = n - 1; row >= 0; row--) {
    let sum = m[row]![n]!;
    for (let k = row + 1; k < n; k++) sum -= m[row]![k]! * x[k]!;
    x[row] = sum / m[row]![row]!;
  }
  return x;
}
