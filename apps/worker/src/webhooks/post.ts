import http from 'node:http';
import https from 'node:https';
import { pinnedLookup, type CheckedWebhookTarget } from '@prompt-queue/shared';

/** What a receiver answered: its status, and where a redirect pointed (never followed). */
export interface PostAnswer {
  status: number;
  location: string | undefined;
}

export interface PostLimits {
  /** Whole attempt, connect to the last byte read, ms. */
  timeoutMs: number;
  /** Response bytes read at most; the rest is dropped with the connection. */
  maxResponseBytes: number;
}

export class DeliveryNetworkError extends Error {
  override readonly name = 'DeliveryNetworkError';
}

/**
 * One POST to a checked target. It connects to exactly the address the guard checked (a pinned
 * `lookup`, so DNS changing between check and connect cannot redirect it), keeps the URL's host for
 * the Host header and TLS verification, follows no redirect (Node's http never does), gives up after
 * `timeoutMs` in all, and reads at most `maxResponseBytes` of the answer: a hostile receiver can
 * neither hold a delivery slot nor make us buffer its body.
 */
export function postWebhook(target: CheckedWebhookTarget, body: string, headers: Record<string, string>, limits: PostLimits): Promise<PostAnswer> {
  const client = target.url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (outcome: { answer: PostAnswer } | { error: Error }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      if ('answer' in outcome) resolve(outcome.answer);
      else reject(outcome.error);
    };
    const request = client.request(
      target.url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: pinnedLookup(target),
        // A fresh connection per delivery: a pooled socket could be one made to an earlier address.
        agent: false,
      },
      (response) => {
        const answer = { status: response.statusCode ?? 0, location: response.headers.location };
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read >= limits.maxResponseBytes) finish({ answer });
        });
        response.on('end', () => finish({ answer }));
        response.on('error', () => finish({ answer }));
      },
    );
    const timer = setTimeout(() => finish({ error: new DeliveryNetworkError(`no complete answer within ${limits.timeoutMs} ms`) }), limits.timeoutMs);
    request.on('error', (error: NodeJS.ErrnoException) => finish({ error: new DeliveryNetworkError(error.code ? `${error.code}: ${error.message}` : error.message) }));
    request.end(body);
  });
}
