import { readFileSync, watch, unwatchFile, watchFile, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { Config, CredentialHealth, Logger } from '@prompt-queue/shared';
import { credentialFingerprint } from '../fingerprint.js';

/**
 * Gemini API key rotation (issue 4 point 7): round-robin over the keys that still work.
 *
 * - Keys come from `GEMINI_API_KEY` (a comma list, fixed for the process) and/or
 *   `GEMINI_API_KEY_FILE` (one key per line, blank lines and `#` comments ignored), the file's
 *   keys after the list's, duplicates once.
 * - A key Google answers with API_KEY_INVALID (400) or PERMISSION_DENIED (403) leaves the rotation
 *   ({@link KeyRing.reject}); it is reported by {@link fingerprint} only (logger.warn and
 *   `onRejected`, for metrics), never by its text. Rejections are per process: each replica spends
 *   at most one call per bad key.
 * - {@link KeyRing.reload} (SIGHUP, or `reload()`) re-reads the file and rebuilds the rotation from
 *   every listed key, keys rejected earlier included: a reload is how an operator says "fixed, try
 *   again" (e.g. the API was re-enabled on the key's project). A still-bad key costs one more call
 *   and leaves again. A file *change* (watched) reloads the same way, but only when the listed keys
 *   actually differ, so a touch or an unrelated event in the directory restores nothing.
 * - A reload that cannot read the file, or finds no key in it and in the list, keeps the current
 *   rotation and logs a warning: half-written files and editors' atomic renames never empty the ring.
 * - No job is lost on reload: `next()` hands out a key string; a call in flight keeps using it even
 *   if a reload drops it, and a later `reject` of a key no longer in the ring is a no-op.
 * - Calls take keys with {@link KeyRing.acquire}: a key not yet seen working (new, or put back by
 *   a reload) carries ONE call at a time, its probe, while calls in flight wait or use keys that
 *   did work ({@link KeyRing.succeeded}); so a bad key costs exactly one call per process even
 *   when a batch of calls goes out at once. `next()` is the plain round-robin without probes.
 * - When every key is rejected, `next()` returns undefined: the caller fails the job with
 *   PROVIDER_AUTH_FAILED (not retryable; nothing will work until an operator reloads good keys).
 */

export type KeyRejectionReason = 'API_KEY_INVALID' | 'PERMISSION_DENIED';

export interface KeyLease {
  key: string;
  /** {@link fingerprint} of `key`: what logs, metrics and errors may show. */
  fingerprint: string;
}

export interface KeyRejectedEvent {
  fingerprint: string;
  reason: KeyRejectionReason;
  /** Keys left in the rotation. */
  remaining: number;
}

export interface KeyReloadResult {
  /** Keys in the rotation after the reload. */
  keys: number;
  /** Fingerprints of keys new to the ring, gone from it, and put back after a rejection. */
  added: string[];
  removed: string[];
  restored: string[];
}

export interface KeyRingOptions {
  /** Fixed keys (`gemini.apiKeys`, from GEMINI_API_KEY). */
  keys?: readonly string[];
  /** Key file (`gemini.apiKeyFile`, GEMINI_API_KEY_FILE), re-read by `reload()` and `watch()`. */
  file?: string;
  logger: Logger;
  /** Called once per key leaving the rotation (e.g. `metrics.apiKeyRejections.inc`). */
  onRejected?: (event: KeyRejectedEvent) => void;
  /** Quiet time after a file event before the file is re-read, ms. @defaultValue 200 */
  debounceMs?: number;
  /** fs.watchFile polling interval (the fallback for filesystems without inotify), ms. @defaultValue 2000 */
  pollIntervalMs?: number;
}

/** First 8 hex digits of the key's sha256: enough to tell keys apart, useless to call Google. */
export function fingerprint(key: string): string {
  return credentialFingerprint(key).slice('sha256:'.length);
}

/** Keys of a key file: one per line, surrounding space trimmed, blank lines and `#` comments skipped. */
export function parseKeyFile(text: string): string[] {
  const keys: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const key = line.replace(/(^|\s)#.*$/, '').trim();
    if (key !== '') keys.push(key);
  }
  return keys;
}

export class KeyRing {
  private readonly staticKeys: readonly string[];
  private readonly file: string | undefined;
  private readonly logger: Logger;
  private readonly onRejected: ((event: KeyRejectedEvent) => void) | undefined;
  private readonly debounceMs: number;
  private readonly pollIntervalMs: number;

  /** Every listed key (list + file), in order. */
  private listed: string[] = [];
  /** Listed keys that left the rotation, with why. */
  private readonly rejected = new Map<string, KeyRejectionReason>();
  private cursor = 0;
  /** Keys that answered a call (not a key error) since they entered the rotation. */
  private readonly verified = new Set<string>();
  /** Unverified keys with their one probe call in flight. */
  private readonly probing = new Set<string>();
  /** Callers of `acquire` waiting for a probe to end. */
  private waiters: (() => void)[] = [];

  private watching = false;
  private dirWatcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly onSighup = (): void => {
    this.logger.info('SIGHUP: reloading Gemini API keys');
    this.safeReload(false);
  };
  private readonly onPoll = (): void => this.scheduleReload();

  constructor(options: KeyRingOptions) {
    this.staticKeys = [...(options.keys ?? [])];
    this.file = options.file === undefined ? undefined : resolve(options.file);
    this.logger = options.logger;
    this.onRejected = options.onRejected;
    this.debounceMs = options.debounceMs ?? 200;
    this.pollIntervalMs = options.pollIntervalMs ?? 2_000;
    // At start an unreadable file is fatal (fail fast); later reloads keep the last good keys.
    this.listed = this.readListed();
  }

  /** From `gemini.apiKeys` and `gemini.apiKeyFile`. Throws when the key file cannot be read. */
  static fromConfig(config: Config, logger: Logger, options: Pick<KeyRingOptions, 'onRejected' | 'debounceMs' | 'pollIntervalMs'> = {}): KeyRing {
    return new KeyRing({
      ...options,
      keys: config.gemini.apiKeys,
      ...(config.gemini.apiKeyFile !== undefined ? { file: config.gemini.apiKeyFile } : {}),
      logger,
    });
  }

  /** Keys in the rotation. */
  get size(): number {
    return this.healthy().length;
  }

  /** Fingerprints of the keys in the rotation and of those rejected, for `/status`. */
  describe(): { healthy: string[]; rejected: { fingerprint: string; reason: KeyRejectionReason }[] } {
    return {
      healthy: this.healthy().map(fingerprint),
      rejected: [...this.rejected].map(([key, reason]) => ({ fingerprint: fingerprint(key), reason })),
    };
  }

  /**
   * Every listed key by fingerprint (`sha256:<8 hex>`), for the dashboard's links: `ok` once it
   * answered a call, `unknown` until then, `rejected` with Google's reason.
   */
  health(): CredentialHealth[] {
    return this.listed.map((key): CredentialHealth => {
      const id = credentialFingerprint(key);
      const reason = this.rejected.get(key);
      if (reason) return { fingerprint: id, state: 'rejected', detail: reason };
      return { fingerprint: id, state: this.verified.has(key) ? 'ok' : 'unknown' };
    });
  }

  /** The next healthy key, round-robin; undefined when none is left (fail with PROVIDER_AUTH_FAILED). */
  next(): KeyLease | undefined {
    const healthy = this.healthy();
    if (healthy.length === 0) return undefined;
    const key = healthy[this.cursor % healthy.length]!;
    this.cursor = (this.cursor + 1) % healthy.length;
    return { key, fingerprint: fingerprint(key) };
  }

  /**
   * A key for one call, round-robin over the healthy keys, with probes (see the module comment):
   * an unverified key is handed out only when no probe is in flight on it; when every healthy key
   * is unverified and probing, waits for a probe to end. Report how the call went with
   * {@link KeyRing.succeeded}, {@link KeyRing.reject} or {@link KeyRing.settled}. Undefined when no
   * key is left (fail with PROVIDER_AUTH_FAILED).
   *
   * `signal`: the caller's call is abandoned (a forced shutdown, a cancel). Waiting for a probe then
   * ends at once, rejecting with the signal's reason; already aborted, it rejects before taking a
   * key. Without this, a job cancelled while it waits would still make its call once woken.
   */
  async acquire(signal?: AbortSignal): Promise<KeyLease | undefined> {
    for (;;) {
      signal?.throwIfAborted();
      const healthy = this.healthy();
      if (healthy.length === 0) return undefined;
      let waitForProbe = false;
      for (let i = 0; i < healthy.length; i++) {
        const index = (this.cursor + i) % healthy.length;
        const key = healthy[index]!;
        if (!this.verified.has(key)) {
          if (this.probing.has(key)) {
            waitForProbe = true;
            continue;
          }
          this.probing.add(key);
        }
        this.cursor = (index + 1) % healthy.length;
        return { key, fingerprint: fingerprint(key) };
      }
      if (!waitForProbe) return undefined;
      await this.waitForWake(signal);
    }
  }

  /** Until the next `wake()`, or until `signal` aborts (then the waiter leaves the list). */
  private waitForWake(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((waiter) => waiter !== wake);
        reject(signal!.reason);
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The call with `key` was answered (not a key error): the key is verified, calls may share it. */
  succeeded(key: string): void {
    this.verified.add(key);
    if (this.probing.delete(key)) this.wake();
  }

  /**
   * The call with `key` ended without telling whether the key works (5xx, timeout, network): its
   * probe ends and the next call may probe it again.
   */
  settled(key: string): void {
    if (this.probing.delete(key)) this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  /**
   * Takes `key` out of the rotation. Returns whether it was in it: concurrent calls that failed
   * with the same key report it once, and a key a reload already dropped is ignored.
   */
  reject(key: string, reason: KeyRejectionReason): boolean {
    this.probing.delete(key);
    this.verified.delete(key);
    this.wake();
    if (!this.listed.includes(key) || this.rejected.has(key)) return false;
    this.rejected.set(key, reason);
    const event: KeyRejectedEvent = { fingerprint: fingerprint(key), reason, remaining: this.size };
    this.logger.warn('Gemini API key left the rotation', { keyFingerprint: event.fingerprint, reason, remaining: event.remaining });
    if (event.remaining === 0) {
      this.logger.error('no usable Gemini API key left: jobs fail with PROVIDER_AUTH_FAILED until the keys are fixed and reloaded (SIGHUP)');
    }
    try {
      this.onRejected?.(event);
    } catch (error) {
      this.logger.warn('onRejected callback failed', { error: String(error) });
    }
    return true;
  }

  /**
   * Re-reads the key file and rebuilds the rotation from every listed key (rejected ones put back).
   * Throws, keeping the current keys, when the file cannot be read or lists no key at all.
   */
  reload(): KeyReloadResult {
    return this.apply(this.readListed());
  }

  /**
   * Reloads on SIGHUP and when the key file changes: fs.watch on its directory (atomic renames,
   * Kubernetes secret symlink swaps) plus fs.watchFile polling as a fallback, debounced. Idempotent.
   * Without a key file only SIGHUP is handled (and changes nothing but restoring rejected keys).
   */
  watch(): this {
    if (this.watching) return this;
    this.watching = true;
    process.on('SIGHUP', this.onSighup);
    if (this.file !== undefined) {
      const name = basename(this.file);
      try {
        this.dirWatcher = watch(dirname(this.file), { persistent: false }, (_event, changed) => {
          if (changed === null || changed === name || changed.startsWith('..')) this.scheduleReload();
        });
        this.dirWatcher.on('error', (error) => this.logger.warn('cannot watch the Gemini key file directory; polling only', { error: String(error) }));
      } catch (error) {
        this.logger.warn('cannot watch the Gemini key file directory; polling only', { error: String(error) });
      }
      watchFile(this.file, { persistent: false, interval: this.pollIntervalMs }, this.onPoll);
    }
    return this;
  }

  /** Stops watching (SIGHUP listener, watchers, pending reload). Idempotent. */
  close(): void {
    if (!this.watching) return;
    this.watching = false;
    process.off('SIGHUP', this.onSighup);
    this.dirWatcher?.close();
    this.dirWatcher = undefined;
    if (this.file !== undefined) unwatchFile(this.file, this.onPoll);
    clearTimeout(this.debounce);
    this.debounce = undefined;
  }

  private healthy(): string[] {
    return this.listed.filter((key) => !this.rejected.has(key));
  }

  private scheduleReload(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (this.watching) this.safeReload(true);
    }, this.debounceMs);
    this.debounce.unref();
  }

  /** For signal and watcher handlers: never throws. `onlyIfChanged`: skip when the list is the same. */
  private safeReload(onlyIfChanged: boolean): void {
    try {
      const listed = this.readListed();
      if (onlyIfChanged && sameKeys(listed, this.listed)) return;
      this.apply(listed);
    } catch (error) {
      this.logger.warn('Gemini API keys not reloaded; keeping the current ones', { error: error instanceof Error ? error.message : String(error), remaining: this.size });
    }
  }

  private apply(listed: string[]): KeyReloadResult {
    const before = new Set(this.listed);
    const after = new Set(listed);
    const result: KeyReloadResult = {
      keys: 0,
      added: listed.filter((key) => !before.has(key)).map(fingerprint),
      removed: this.listed.filter((key) => !after.has(key)).map(fingerprint),
      restored: [...this.rejected.keys()].filter((key) => after.has(key)).map(fingerprint),
    };
    this.listed = listed;
    this.rejected.clear();
    this.cursor = 0;
    // A key put back after a rejection must prove itself again; keys that stay keep their standing.
    for (const key of [...this.verified]) if (!after.has(key) || result.restored.includes(fingerprint(key))) this.verified.delete(key);
    this.wake();
    result.keys = this.size;
    // Field names chosen so the logger's redaction (`keys`, `key`…) leaves the fingerprints readable.
    this.logger.info('Gemini API keys reloaded', { healthyKeys: result.keys, added: result.added, removed: result.removed, restored: result.restored });
    return result;
  }

  /** The list's keys then the file's, duplicates once. Throws when the ring would be empty. */
  private readListed(): string[] {
    let fromFile: string[] = [];
    if (this.file !== undefined) {
      try {
        fromFile = parseKeyFile(readFileSync(this.file, 'utf8'));
      } catch (error) {
        throw new Error(`GEMINI_API_KEY_FILE: cannot read ${this.file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      }
      if (fromFile.length === 0 && this.staticKeys.length === 0) {
        throw new Error(`GEMINI_API_KEY_FILE: ${this.file} lists no key`);
      }
    }
    return [...new Set([...this.staticKeys, ...fromFile])];
  }
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((key, index) => key === b[index]);
}

const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

/**
 * Whether a failed call says its KEY is bad (so the key should leave the rotation), read from the
 * SDK's GoogleGenerativeAIFetchError (`status`, `errorDetails`), directly or as the `cause` of a
 * classified ProviderError:
 * - 400 with google.rpc.ErrorInfo reason API_KEY_INVALID → 'API_KEY_INVALID';
 * - 403 (PERMISSION_DENIED: API disabled on the key's project, key restrictions, a missing key) →
 *   'PERMISSION_DENIED', except a 403 about a File the job references (`fileData` of another
 *   project): that is the job's fault, and rejecting every key in turn for it would empty the ring.
 * Anything else (other 400s, 429, 5xx, network) → undefined: the key is fine.
 */
export function rejectionReason(error: unknown): KeyRejectionReason | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth++) {
    if (typeof current.status === 'number' && 'errorDetails' in current) return reasonOf(current);
    current = current.cause;
  }
  return undefined;
}

function reasonOf(error: Record<string, unknown>): KeyRejectionReason | undefined {
  const details = Array.isArray(error.errorDetails) ? (error.errorDetails as unknown[]) : [];
  const reason = details.find((detail): detail is Record<string, unknown> => isRecord(detail) && detail['@type'] === ERROR_INFO_TYPE)?.reason;
  if (error.status === 400 && reason === 'API_KEY_INVALID') return 'API_KEY_INVALID';
  if (error.status === 403) {
    const message = typeof error.message === 'string' ? error.message : '';
    if (/permission to access (the )?File\b/i.test(message)) return undefined;
    return 'PERMISSION_DENIED';
  }
  return undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
