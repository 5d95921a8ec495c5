import { createHash, randomUUID } from 'node:crypto';

/**
 * Job ids. An idempotency key maps to a deterministic id, so BullMQ itself refuses the duplicate
 * atomically (adding an existing id returns the existing job). The tenant is part of the hash, so
 * two tenants using the same key never meet. BullMQ custom ids must not contain ':'.
 */
export function idempotentJobId(tenant: string, idempotencyKey: string): string {
  return `j${createHash('sha256').update(`${tenant}\n${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

export function randomJobId(): string {
  return `j${randomUUID().replaceAll('-', '')}`;
}

/** Both forms are `j` + 32 hex digits; anything else cannot be one of our jobs. */
export function isJobId(value: string): boolean {
  return /^j[0-9a-f]{32}$/.test(value);
}
