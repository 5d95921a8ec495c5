import { WebhookVerificationError } from './errors.js';
import type { WebhookEvent } from './types.js';

/**
 * Verifies a webhook request as docs/webhooks.md specifies, with Web Crypto only (Node ≥ 20,
 * browsers, edge runtimes):
 *
 *     PromptQueue-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]
 *     v1 = hex(HMAC-SHA256(secret, `${t}.${rawBody}`))
 *
 * Signatures are checked with `crypto.subtle.verify`, which compares in constant time.
 */

export const SIGNATURE_HEADER = 'PromptQueue-Signature';
export const EVENT_ID_HEADER = 'PromptQueue-Event-Id';
/** The replay window of docs/webhooks.md, seconds. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** Node's `req.headers` (lowercase keys), a plain object, or a fetch `Headers`. */
export type WebhookHeaders = Record<string, string | string[] | undefined> | { get(name: string): string | null };

export interface VerifyWebhookOptions {
  /** Largest accepted distance between `t` and now, seconds. @defaultValue 300 */
  toleranceSeconds?: number;
  /** The receiver's clock, epoch ms. @defaultValue Date.now() */
  now?: number;
}

export interface VerifiedWebhook {
  /** The parsed body. Deliveries are at least once: deduplicate on `event.id`. */
  event: WebhookEvent;
  /** `PromptQueue-Event-Id`, equal to `event.id`. */
  eventId: string | undefined;
  timestampSeconds: number;
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((candidate) => candidate.toLowerCase() === name.toLowerCase());
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value[0] : value;
}

function hexToBytes(hex: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/**
 * Checks the signature of a webhook request against the raw body bytes as received (not a
 * re-serialized parse) and one or more secrets (during a rotation), then parses the body.
 * Rejects with a {@link WebhookVerificationError} whose `reason` says what failed.
 *
 * @example
 * ```ts
 * // Express: keep the raw bytes
 * app.post('/hooks/prompt-queue', express.raw({ type: 'application/json' }), async (req, res) => {
 *   try {
 *     const { event } = await verifyWebhook(req.headers, req.body, process.env.WEBHOOK_SECRET!);
 *     res.status(204).end();
 *     handle(event);
 *   } catch {
 *     res.status(400).end();
 *   }
 * });
 * ```
 */
export async function verifyWebhook(
  headers: WebhookHeaders,
  rawBody: string | Uint8Array,
  secret: string | readonly string[],
  { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = Date.now() }: VerifyWebhookOptions = {},
): Promise<VerifiedWebhook> {
  const value = header(headers, SIGNATURE_HEADER);
  if (!value) throw new WebhookVerificationError('missing-signature', `no ${SIGNATURE_HEADER} header`);
  let timestamp: number | undefined;
  const signatures: Uint8Array<ArrayBuffer>[] = [];
  for (const item of value.split(',')) {
    const [key, field] = item.trim().split('=', 2) as [string, string | undefined];
    if (key === 't' && field && /^\d{1,12}$/.test(field)) timestamp = Number(field);
    else if (key === 'v1' && field && /^[0-9a-f]{64}$/.test(field)) signatures.push(hexToBytes(field));
  }
  if (timestamp === undefined || signatures.length === 0) {
    throw new WebhookVerificationError('malformed-signature', `${SIGNATURE_HEADER} needs t=<unix seconds> and at least one v1=<64 hex>`);
  }
  const skew = Math.abs(Math.floor(now / 1000) - timestamp);
  if (skew > toleranceSeconds) {
    throw new WebhookVerificationError('timestamp-outside-tolerance', `the signature is ${skew} s from now, more than the ${toleranceSeconds} s tolerated`);
  }

  const encoder = new TextEncoder();
  const body = typeof rawBody === 'string' ? encoder.encode(rawBody) : rawBody;
  const signed = concat(encoder.encode(`${timestamp}.`), body);
  const secrets = typeof secret === 'string' ? [secret] : secret;
  let matches = false;
  for (const candidate of secrets) {
    const key = await crypto.subtle.importKey('raw', encoder.encode(candidate), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
    // Every v1 is checked, so the time taken does not tell which one matched.
    for (const signature of signatures) {
      if (await crypto.subtle.verify('HMAC', key, signature, signed)) matches = true;
    }
  }
  if (!matches) throw new WebhookVerificationError('signature-mismatch', 'no v1 signature matches the body under the given secret');

  const text = typeof rawBody === 'string' ? rawBody : new TextDecoder().decode(rawBody);
  return { event: JSON.parse(text) as WebhookEvent, eventId: header(headers, EVENT_ID_HEADER), timestampSeconds: timestamp };
}
