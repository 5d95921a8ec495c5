import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import winston from 'winston';
import type { ErrorCode } from '../errors.js';
import { nanoUsdToUsd } from '../pricing/cost.js';

/**
 * The audit stream: one JSON line per job end (served, cache hit, failed, cancelled), for billing disputes and
 * cost analysis. Its own winston logger and stream, apart from the app log, so it can be shipped
 * and kept separately. Lines are built from an allowlist of fields: prompt text and keys never
 * reach them, unless `logPrompts` adds the prompt on purpose.
 */

export type AuditDestination = 'stdout' | 'stderr' | { file: string };

/** What is known about one job's end (one line per job: lifecycle/job-ends.ts). */
export interface AuditRecord {
  /** When the attempt finished. @defaultValue now */
  ts?: Date | string;
  tenant: string;
  jobId: string;
  /** sha256 (hex) of the prompt: correlates repeated prompts without storing them. */
  promptSha256: string;
  model: string;
  provider: string;
  inputTokens: number;
  outputTokens: number;
  thoughtsTokens: number;
  cachedTokens: number;
  /** Billed cost, integer nano-USD; `null` when the model has no price. */
  costNanoUsd: number | null;
  outcome: 'completed' | 'failed' | 'cancelled';
  errorCode?: ErrorCode;
  /** Wall time of the attempt, ms. */
  latencyMs: number;
  /** Attempts made, the last one included. */
  attempt: number;
  /** Served from the response cache. */
  cached: boolean;
  /** The prompt text; written only when the log was created with `logPrompts`. */
  prompt?: string;
}

export interface AuditLog {
  write(record: AuditRecord): void;
  /** Flushes pending lines (and closes the file); idempotent. Later writes are dropped. */
  close(): Promise<void>;
}

export interface AuditLogOptions {
  destination: AuditDestination;
  /** Add the prompt text to each line. @defaultValue false */
  logPrompts?: boolean;
}

/** Reads the `AUDIT_LOG` setting: `stdout`, `stderr`, or else a file path. */
export function parseAuditDestination(value: string): AuditDestination {
  return value === 'stdout' || value === 'stderr' ? value : { file: value };
}

export function createAuditLog({ destination, logPrompts = false }: AuditLogOptions): AuditLog {
  const file: WriteStream | undefined =
    typeof destination === 'object' ? createWriteStream(destination.file, { flags: 'a' }) : undefined;
  const stream = file ?? (destination === 'stdout' ? process.stdout : process.stderr);
  const transport = new winston.transports.Stream({ stream, eol: '\n' });
  const logger = winston.createLogger({
    level: 'info',
    // The line is built by `auditLine`; winston only carries it (no level, no extra metadata).
    format: winston.format.printf((info) => String(info.message)),
    transports: [transport],
  });

  let closing: Promise<void> | undefined;
  return {
    write(record) {
      if (closing) return;
      logger.info(JSON.stringify(auditLine(record, logPrompts)));
    },
    close() {
      closing ??= (async () => {
        // The logger ends its transport once every queued line has been handed to the stream.
        const drained = once(transport, 'finish');
        logger.end();
        await drained;
        if (file) {
          file.end();
          await once(file, 'close');
        }
      })();
      return closing;
    },
  };
}

/** The line's fields, in a fixed order. Exported for tests and for tools that parse the stream. */
export function auditLine(record: AuditRecord, logPrompts: boolean): Record<string, unknown> {
  const ts = record.ts === undefined ? new Date() : record.ts;
  const line: Record<string, unknown> = {
    ts: typeof ts === 'string' ? ts : ts.toISOString(),
    tenant: record.tenant,
    jobId: record.jobId,
    promptSha256: record.promptSha256,
    model: record.model,
    provider: record.provider,
    inputTokens: record.inputTokens,
    outputTokens: record.outputTokens,
    thoughtsTokens: record.thoughtsTokens,
    cachedTokens: record.cachedTokens,
    costUsd: record.costNanoUsd === null ? null : nanoUsdToUsd(record.costNanoUsd),
    costNanoUsd: record.costNanoUsd,
    outcome: record.outcome,
    ...(record.errorCode !== undefined ? { errorCode: record.errorCode } : {}),
    latencyMs: record.latencyMs,
    attempt: record.attempt,
    cached: record.cached,
  };
  if (logPrompts && record.prompt !== undefined) line.prompt = record.prompt;
  return line;
}
