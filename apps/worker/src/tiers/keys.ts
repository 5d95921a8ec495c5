import { ownPrefix } from '@prompt-queue/shared';

/**
 * Redis keys of the Batch API tier (docs/decisions/tiers.md), same conventions as
 * packages/shared/src/redis/keys.ts: our keys under `<prefix>:`, hash-tagged where one command
 * touches several together. A model's collection, requests, open batches and submit intent share
 * the tag `{tier:<model>}`; a job's record and its answer share its tenant's `{<tenant>}` (data is
 * tenant-scoped: a job is found by tenant + id, never by id alone).
 */

/** ZSET of the model's collected jobs (`<tenant>/<jobId>`), scored by when they were collected (ms). */
export function collectedKey(prefix: string, model: string): string {
  return `${ownPrefix(prefix)}:tier:{tier:${model}}:collected`;
}

/** HASH `<tenant>/<jobId>` → the job's request as the Batch API takes it (JSON), until submitted. */
export function requestsKey(prefix: string, model: string): string {
  return `${ownPrefix(prefix)}:tier:{tier:${model}}:requests`;
}

/** HASH batch name → `{ members, createdAt }` (JSON): the model's batches not yet answered. */
export function openBatchesKey(prefix: string, model: string): string {
  return `${ownPrefix(prefix)}:tier:{tier:${model}}:open`;
}

/** STRING: a submit in progress (`{ displayName, members }`), so a killed submitter's successor can adopt or redo it. */
export function submitIntentKey(prefix: string, model: string): string {
  return `${ownPrefix(prefix)}:tier:{tier:${model}}:intent`;
}

/** SET of models that have collected jobs or open batches (the runner's index; never SCAN). */
export function tierModelsKey(prefix: string): string {
  return `${ownPrefix(prefix)}:tier:models`;
}

/** STRING lease of the fleet-wide submitter/poller (SET NX PX). */
export function tierLeaseKey(prefix: string): string {
  return `${ownPrefix(prefix)}:tier:lease`;
}

/** STRING (JSON {@link BatchJobRecord}): where a job is on the batch path. */
export function batchJobKey(prefix: string, tenant: string, jobId: string): string {
  return `${ownPrefix(prefix)}:tier:job:{${tenant}}:${jobId}`;
}

/**
 * STRING (JSON BudgetReservation) with a TTL: the budget a budgeted tenant's job holds while it is
 * on the batch path, from its collection until its answer settles it or its fallback releases it.
 */
export function batchBudgetKey(prefix: string, tenant: string, jobId: string): string {
  return `${ownPrefix(prefix)}:tier:budget:{${tenant}}:${jobId}`;
}

/** STRING (JSON {@link BatchAnswer}) with a TTL: a job's answer from its batch. */
export function batchAnswerKey(prefix: string, tenant: string, jobId: string): string {
  return `${ownPrefix(prefix)}:tier:answer:{${tenant}}:${jobId}`;
}

/** A job's member name in a collection and a batch: `<tenant>/<jobId>` (tenant names have no `/`). */
export function memberOf(tenant: string, jobId: string): string {
  return `${tenant}/${jobId}`;
}

export function parseMember(member: string): { tenant: string; jobId: string } {
  const slash = member.indexOf('/');
  return { tenant: member.slice(0, slash), jobId: member.slice(slash + 1) };
}

/**
 * Where a job is on the batch path, as a discriminated union:
 * - `collected`: in its model's collection, its request stored, waiting for a submit;
 * - `submitted`: in batch `batch`;
 * - `fallback`: its batch failed, expired or was cancelled: serve it standard now.
 * `fallbackAt`: epoch ms when it is served standard whatever its batch does.
 */
export type BatchJobRecord =
  | { state: 'collected'; model: string; fallbackAt: number }
  | { state: 'submitted'; model: string; fallbackAt: number; batch: string }
  | { state: 'fallback'; model: string; fallbackAt: number; why: string };

/** One request's outcome in a finished batch, stored for its job. */
export type BatchAnswer =
  | { kind: 'response'; response: unknown; batch: string }
  | { kind: 'error'; code: number; status: string; message: string; batch: string };
