import type { Redis } from 'ioredis';
import { publishedLinksKey } from '../redis/keys.js';
import type { LimitKey, RateLimits } from '../limits/types.js';

/**
 * The chain links each worker serves, published in Redis for the dashboard, which cannot import
 * the worker's provider plugins: one hash, field = link id, value = JSON {@link PublishedLink}.
 * Each worker rewrites its links every `PUBLISHED_LINKS_REFRESH_MS` and pushes the hash's expiry to
 * `PUBLISHED_LINKS_TTL_MS`; readers skip entries whose `updatedAt` is older than that TTL, so the
 * links of a fleet that stopped (or of a link removed from the config) fade out on their own.
 *
 * Credentials appear as fingerprints and states only, never as secrets.
 */

/** How often a worker republishes its links, ms. */
export const PUBLISHED_LINKS_REFRESH_MS = 15_000;
/** How long a published link stays readable without a refresh, ms. */
export const PUBLISHED_LINKS_TTL_MS = 60_000;

/** One credential of a link, as logs and the dashboard may show it. */
export interface CredentialHealth {
  /** e.g. `sha256:ab12cd34` (a key's hash prefix) or a service account's e-mail: never a secret. */
  fingerprint: string;
  /** `ok`: it served a call; `rejected`: the provider refused it; `unknown`: not used yet. */
  state: 'ok' | 'rejected' | 'unknown';
  /** Why, e.g. `API_KEY_INVALID`. */
  detail?: string;
}

export interface PublishedLink {
  /** `<name>:<model>:<project>`: the breaker's name. */
  id: string;
  /** The provider plugin's name (`gemini`, `openai`…). */
  provider: string;
  /** The link's name in results and logs (`name`, else the provider). */
  name: string;
  model: string;
  /** The fleet-wide limiter scope and its configured limits (0 = unlimited). */
  limitKey: Required<LimitKey>;
  limits: RateLimits;
  credentials: CredentialHealth[];
  /** Epoch ms of the publishing worker's last refresh, and that worker (`<host>:<pid>`). */
  updatedAt: number;
  workerId: string;
}

/** Writes `links` (one HSET) and pushes the hash's expiry. */
export async function publishLinks(redis: Redis, prefix: string, links: readonly PublishedLink[]): Promise<void> {
  if (links.length === 0) return;
  const key = publishedLinksKey(prefix);
  await redis
    .multi()
    .hset(key, Object.fromEntries(links.map((link) => [link.id, JSON.stringify(link)])))
    .pexpire(key, PUBLISHED_LINKS_TTL_MS)
    .exec();
}

/** The links published within the TTL, by id; entries that do not parse are skipped. */
export async function readPublishedLinks(redis: Redis, prefix: string, now = Date.now()): Promise<PublishedLink[]> {
  const raw = await redis.hgetall(publishedLinksKey(prefix));
  return Object.values(raw)
    .map(parsePublishedLink)
    .filter((link): link is PublishedLink => link !== undefined && now - link.updatedAt <= PUBLISHED_LINKS_TTL_MS)
    .sort((a, b) => a.id.localeCompare(b.id));
}

function parsePublishedLink(json: string): PublishedLink | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Partial<PublishedLink>;
  const strings = [v.id, v.provider, v.name, v.model, v.workerId];
  if (!strings.every((field) => typeof field === 'string') || typeof v.updatedAt !== 'number') return undefined;
  if (typeof v.limitKey !== 'object' || v.limitKey === null || typeof v.limits !== 'object' || v.limits === null) return undefined;
  return { ...(v as PublishedLink), credentials: Array.isArray(v.credentials) ? v.credentials : [] };
}
