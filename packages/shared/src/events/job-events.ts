import type { ChainableCommander, Redis } from 'ioredis';
import { z } from 'zod';
import { jobEventsKey } from '../redis/keys.js';
import { jobViewSchema } from '../queue/job-view.js';
import { isCluster, keySlot } from '../redis/cluster.js';

/**
 * Live job events: what happened to a tenant's jobs, in order, for `GET /v1/jobs/:id/events` and
 * `GET /v1/events` (Server-Sent Events, apps/producer). One Redis Stream per tenant
 * (`jobEventsKey`), trimmed to about `events.historyPerTenant` entries: the stream id is the SSE
 * event id, so a client resumes with `Last-Event-ID` over that bounded history.
 *
 * Writers append inside a pipeline they already execute (the producer's enqueue, the worker's job
 * end), so an event costs no round trip of its own. Events are persisted data read by producers of
 * other versions during a deploy: fields may be added (optional), never changed.
 */

export const JOB_EVENT_TYPES = ['queued', 'active', 'retrying', 'waiting', 'completed', 'failed', 'cancelled'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

export const jobEventSchema = z.object({
  type: z.enum(JOB_EVENT_TYPES),
  jobId: z.string(),
  tenant: z.string(),
  /** ISO time the event happened */
  at: z.iso.datetime().describe('When the event happened.'),
  /** 1-based attempt, when known; 0 when none was made (a job cancelled while queued) */
  attempt: z.number().int().nonnegative().optional().describe('1-based attempt, when known; 0 when none was made (a job cancelled while queued).'),
  /** waiting: why (quota, rate-limited, daily-quota, budget, …) and until when (ISO) */
  reason: z.string().optional().describe('waiting: why (quota, rate-limited, daily-quota, budget, …).'),
  until: z.string().optional().describe('waiting: until when (ISO 8601).'),
  /** failed / retrying: the error code */
  code: z.string().optional().describe('failed / retrying: the error code.'),
  /** final events (completed, failed, cancelled): the job view as GET /v1/jobs/:id shows it */
  view: jobViewSchema.optional(),
}).meta({ id: 'JobEvent' });
/** The type is inferred from the schema, which is also the documented `data:` of an SSE event. */
export type JobEvent = z.infer<typeof jobEventSchema>;

/** A stored event with its stream id (`<ms>-<seq>`), the SSE `id:`. */
export type StoredJobEvent = JobEvent & { id: string };

const TYPES = new Set<string>(JOB_EVENT_TYPES);

/** A job has no event after these; a per-job stream ends with them. */
export function isFinalJobEvent(type: JobEventType): boolean {
  return type === 'completed' || type === 'failed' || type === 'cancelled';
}

/**
 * Appends XADDs (MAXLEN ~ maxLen) for the events to a pipeline/multi the caller executes: no round
 * trip of its own. `~` lets Redis trim whole stream nodes only, which is cheap: a stream may hold
 * up to one node (100 entries by default) more than `maxLen`.
 */
export function appendJobEvents(pipeline: ChainableCommander, prefix: string, events: readonly JobEvent[], maxLen: number): void {
  for (const event of events) {
    // Known fields only: whatever else a caller's object carries (a job's payload, prompt text)
    // never reaches a stream that tenants read.
    const { type, jobId, tenant, at, attempt, reason, until, code, view } = event;
    const stored = { type, jobId, tenant, at, attempt, reason, until, code, view };
    pipeline.xadd(jobEventsKey(prefix, tenant), 'MAXLEN', '~', maxLen, '*', 'job', jobId, 'event', JSON.stringify(stored));
  }
}

/** Events of a tenant after a stream id (exclusive), oldest first, each with its stream id as `id`. */
export async function readJobEvents(redis: Redis, prefix: string, tenant: string, afterId: string, count: number): Promise<StoredJobEvent[]> {
  const entries = await redis.xrange(jobEventsKey(prefix, tenant), `(${afterId}`, '+', 'COUNT', count);
  return parseEntries(entries, tenant);
}

/** The id of a tenant's newest event, or `0-0` when it has none: "now" as a resumable position. */
export async function lastJobEventId(redis: Redis, prefix: string, tenant: string): Promise<string> {
  const [newest] = await redis.xrevrange(jobEventsKey(prefix, tenant), '+', '-', 'COUNT', 1);
  return newest?.[0] ?? '0-0';
}

/**
 * How often a Cluster reader looks again when its tenants' streams are in several slots, ms (one
 * blocking XREAD cannot wait on several slots, and blocking reads on one connection would queue).
 */
export const CLUSTER_EVENTS_POLL_MS = 200;

/**
 * One XREAD over several tenants' streams, each after its own id (exclusive), at most `count`
 * events per tenant; with `blockMs`, waits up to that long for the first new event. Tenants with
 * nothing new are absent from the answer.
 *
 * Redis Cluster: each tenant's stream is in its tenant's slot, and one XREAD may only name streams
 * of one slot. Streams of one slot: the same blocking XREAD. Several: one non-blocking XREAD per
 * slot, all at once; with `blockMs` and nothing new, the call waits {@link CLUSTER_EVENTS_POLL_MS}
 * (at most `blockMs`) before answering, so the caller's loop polls instead of blocking.
 */
export async function readJobEventsOfTenants(
  redis: Redis,
  prefix: string,
  after: ReadonlyMap<string, string>,
  options: { count: number; blockMs?: number },
): Promise<Map<string, StoredJobEvent[]>> {
  const read = new Map<string, StoredJobEvent[]>();
  if (after.size === 0) return read;
  const tenants = [...after.keys()];
  const bySlot = new Map<number, string[]>();
  for (const tenant of tenants) {
    const slot = isCluster(redis) ? keySlot(jobEventsKey(prefix, tenant)) : 0;
    bySlot.set(slot, [...(bySlot.get(slot) ?? []), tenant]);
  }
  const block = bySlot.size === 1 ? options.blockMs : undefined;
  const readSlot = async (group: string[]): Promise<void> => {
    const keys = group.map((tenant) => jobEventsKey(prefix, tenant));
    const ids = group.map((tenant) => after.get(tenant)!);
    const reply =
      block === undefined
        ? await redis.xread('COUNT', options.count, 'STREAMS', ...keys, ...ids)
        : await redis.xread('COUNT', options.count, 'BLOCK', block, 'STREAMS', ...keys, ...ids);
    for (const [key, entries] of reply ?? []) {
      const tenant = group[keys.indexOf(key)];
      if (tenant !== undefined) read.set(tenant, parseEntries(entries, tenant));
    }
  };
  await Promise.all([...bySlot.values()].map(readSlot));
  if (read.size === 0 && block === undefined && options.blockMs !== undefined) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.blockMs!, CLUSTER_EVENTS_POLL_MS)));
  }
  return read;
}

const MAX_ID_PART = 2n ** 64n - 1n;

/**
 * A client-supplied stream id (`Last-Event-ID`) in Redis' full form, or undefined when it is not
 * one: `<ms>-<seq>` or `<ms>` (= `<ms>-0`), each part a 64-bit unsigned integer. Checked here so a
 * bad id is a 400, never a Redis error.
 */
export function parseStreamId(value: string): string | undefined {
  const match = /^(\d{1,20})(?:-(\d{1,20}))?$/.exec(value);
  if (!match) return undefined;
  const ms = BigInt(match[1]!);
  const seq = BigInt(match[2] ?? '0');
  return ms <= MAX_ID_PART && seq <= MAX_ID_PART ? `${ms}-${seq}` : undefined;
}

/** Orders two full stream ids (`<ms>-<seq>`, as Redis returns them): negative, 0 or positive. */
export function compareStreamIds(a: string, b: string): number {
  const [aMs = 0n, aSeq = 0n] = a.split('-').map(BigInt);
  const [bMs = 0n, bSeq = 0n] = b.split('-').map(BigInt);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

/** Stream entries to events; entries that do not parse (written by a newer version, damaged) are skipped. */
function parseEntries(entries: [id: string, fields: string[]][], tenant: string): StoredJobEvent[] {
  const events: StoredJobEvent[] = [];
  for (const [id, fields] of entries) {
    const event = parseEvent(fieldValue(fields, 'event'));
    // The stream is the tenant's: its key, not the entry, says whose event it is.
    if (event) events.push({ ...event, tenant, id });
  }
  return events;
}

function fieldValue(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

function parseEvent(raw: string | undefined): JobEvent | undefined {
  if (raw === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const event = value as Partial<JobEvent>;
  if (typeof event.type !== 'string' || !TYPES.has(event.type) || typeof event.jobId !== 'string' || typeof event.at !== 'string') return undefined;
  return event as JobEvent;
}
