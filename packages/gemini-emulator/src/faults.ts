// Faults switchable at runtime. Several can be active; the first that fires wins.
// `share` is deterministic (an error-diffusion counter, not Math.random): with share 0.25
// exactly every 4th matching call fires, so tests can assert exact outcomes.

export type FaultKind = 'unavailable' | 'internal' | 'deadline' | 'rateLimit' | 'slow' | 'badRequest';

export const FAULT_KINDS: readonly FaultKind[] = ['unavailable', 'internal', 'deadline', 'rateLimit', 'slow', 'badRequest'];

export interface FaultSpec {
  kind: FaultKind;
  /** Only calls to this model (default: every model). */
  model?: string;
  /** Only these methods, e.g. ["generateContent", "chat.completions"] (default: all). */
  methods?: string[];
  /** The fault expires this long after it was added. */
  durationMs?: number;
  /** Fraction 0..1 of matching calls that fire (default 1). */
  share?: number;
  /** Fire for the next N matching calls, then disappear. */
  count?: number;
  /** rateLimit: RetryInfo.retryDelay in seconds (default 10). */
  retryDelaySeconds?: number;
  /** slow: extra delay before answering (default 30000). */
  delayMs?: number;
  /** Override the error message. */
  message?: string;
}

export interface ActiveFault extends FaultSpec {
  id: string;
  createdAt: number;
  expiresAt?: number;
  /** Matching calls seen (fired or not). */
  seen: number;
  /** Calls this fault fired on. */
  fired: number;
}

export function parseFaultSpec(raw: unknown): FaultSpec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('fault must be a JSON object');
  const r = raw as Record<string, unknown>;
  const known = ['kind', 'model', 'methods', 'durationMs', 'share', 'count', 'retryDelaySeconds', 'delayMs', 'message'];
  for (const key of Object.keys(r)) if (!known.includes(key)) throw new Error(`unknown fault field "${key}"`);
  if (typeof r.kind !== 'string' || !FAULT_KINDS.includes(r.kind as FaultKind)) {
    throw new Error(`fault kind must be one of ${FAULT_KINDS.join(', ')}`);
  }
  const spec: FaultSpec = { kind: r.kind as FaultKind };
  if (r.model !== undefined) {
    if (typeof r.model !== 'string' || r.model === '') throw new Error('fault model must be a non-empty string');
    spec.model = r.model.replace(/^models\//, '');
  }
  if (r.methods !== undefined) {
    if (!Array.isArray(r.methods) || !r.methods.every((m) => typeof m === 'string')) throw new Error('fault methods must be a list of strings');
    spec.methods = r.methods as string[];
  }
  const num = (key: 'durationMs' | 'share' | 'count' | 'retryDelaySeconds' | 'delayMs', min: number, max: number, integer: boolean): void => {
    const v = r[key];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new Error(`fault ${key} must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
    }
    spec[key] = v;
  };
  num('durationMs', 1, Number.MAX_SAFE_INTEGER, true);
  num('share', 0, 1, false);
  num('count', 1, Number.MAX_SAFE_INTEGER, true);
  num('retryDelaySeconds', 0, 86_400, false);
  num('delayMs', 0, 3_600_000, true);
  if (r.message !== undefined) {
    if (typeof r.message !== 'string') throw new Error('fault message must be a string');
    spec.message = r.message;
  }
  return spec;
}

export class FaultRegistry {
  private faults: ActiveFault[] = [];
  private nextId = 1;

  constructor(private readonly now: () => number = Date.now) {}

  add(spec: FaultSpec): ActiveFault {
    const createdAt = this.now();
    const fault: ActiveFault = { ...spec, id: `fault-${this.nextId++}`, createdAt, seen: 0, fired: 0 };
    if (spec.durationMs !== undefined) fault.expiresAt = createdAt + spec.durationMs;
    this.faults.push(fault);
    return { ...fault };
  }

  remove(id: string): boolean {
    const before = this.faults.length;
    this.faults = this.faults.filter((f) => f.id !== id);
    return this.faults.length !== before;
  }

  clear(): void {
    this.faults = [];
  }

  list(): ActiveFault[] {
    this.prune();
    return this.faults.map((f) => ({ ...f }));
  }

  private prune(): void {
    const now = this.now();
    this.faults = this.faults.filter((f) => (f.expiresAt === undefined || now < f.expiresAt) && (f.count === undefined || f.count > 0));
  }

  /** The fault that fires for this call, if any; consumes `count` and advances `share`. */
  match(model: string, method: string): ActiveFault | undefined {
    this.prune();
    for (const fault of this.faults) {
      if (fault.model !== undefined && fault.model !== model) continue;
      if (fault.methods !== undefined && !fault.methods.includes(method)) continue;
      fault.seen++;
      const share = fault.share ?? 1;
      // Fires when the running total floor(seen * share) steps up: exact proportion, no randomness.
      const fires = Math.floor(fault.seen * share + 1e-9) > Math.floor((fault.seen - 1) * share + 1e-9);
      if (!fires) continue;
      fault.fired++;
      if (fault.count !== undefined) fault.count--;
      const snapshot = { ...fault };
      this.prune();
      return snapshot;
    }
    return undefined;
  }
}
