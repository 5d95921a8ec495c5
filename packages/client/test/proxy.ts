// A small HTTP proxy in front of the producer that misbehaves on cue, to show what the client does
// when an answer is lost: forward the request (the job is made) and then answer 503, or drop the
// connection; or cut a Server-Sent Events stream after its first event.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * - `forward`: pass through.
 * - `forward-then-503`: the producer gets the request, the client gets 503 REDIS_UNAVAILABLE.
 * - `forward-then-reset`: the producer gets the request, the client's connection is destroyed.
 * - `cut-after-first-event`: pass an SSE stream through until its first event, then drop it.
 */
export type ProxyAction = 'forward' | 'forward-then-503' | 'forward-then-reset' | 'cut-after-first-event';

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  action: ProxyAction;
}

export interface MisbehavingProxy {
  url: string;
  seen: SeenRequest[];
  /** Actions for the next matching requests, in order; afterwards `forward`. */
  plan(match: (req: { method: string; path: string }) => boolean, actions: ProxyAction[]): void;
  close(): Promise<void>;
}

export async function startProxy(target: string): Promise<MisbehavingProxy> {
  const seen: SeenRequest[] = [];
  let plans: { match: (req: { method: string; path: string }) => boolean; actions: ProxyAction[] }[] = [];
  const upstream = new URL(target);

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const key = { method: req.method!, path: req.url! };
      const plan = plans.find((candidate) => candidate.match(key) && candidate.actions.length > 0);
      const action = plan?.actions.shift() ?? 'forward';
      seen.push({ ...key, headers: req.headers, body: body.toString('utf8'), action });
      const out = request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
        (answer) => {
          if (action === 'forward-then-503') {
            answer.resume();
            answer.on('end', () => {
              res.writeHead(503, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ error: { code: 'REDIS_UNAVAILABLE', message: 'Redis is not reachable; retry shortly.' } }));
            });
            return;
          }
          if (action === 'forward-then-reset') {
            answer.resume();
            answer.on('end', () => req.socket.destroy());
            return;
          }
          res.writeHead(answer.statusCode!, answer.headers);
          let passed = '';
          let cut = false;
          answer.on('data', (chunk: Buffer) => {
            if (action !== 'cut-after-first-event') return void res.write(chunk);
            if (cut) return;
            // Pass exactly the first event (through its blank line), then drop the connection.
            passed += chunk.toString('utf8');
            const data = passed.indexOf('\ndata:');
            const end = data < 0 ? -1 : passed.indexOf('\n\n', data);
            if (end < 0) return;
            cut = true;
            res.write(passed.slice(0, end + 2), () => {
              answer.destroy();
              req.socket.destroy();
            });
          });
          answer.on('end', () => res.end());
          answer.on('error', () => res.destroy());
        },
      );
      out.on('error', () => res.destroy());
      out.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    plan(match, actions) {
      plans.push({ match, actions: [...actions] });
    },
    async close() {
      plans = [];
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
