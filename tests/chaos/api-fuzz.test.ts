// Chaos at the front door: fast-check sends thousands of random and malformed HTTP requests to a
// real producer process (raw TCP, so nothing in a client library tidies them up): random methods,
// paths and percent-encodings, odd and huge headers, wrong content types and encodings, garbage
// bytes, invalid UTF-8, deep nesting, bodies around the size limit, random bulk items and
// idempotency keys. Valid jobs are interleaved and a worker runs, so they must all complete.
//
// Asserted: no response ≥ 500; every answer of the app to /v1/* is JSON, either a success body or
// `{ error: { code, message } }`; the process stays up; every accepted valid job completes.
// Reproduce a failure with CHAOS_FUZZ_SEED=<seed printed on failure>.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { startTestRedis, uniquePrefix, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { API_KEY, AUTH, assertBuilt, baseEnv, histogram, isAlive, mapLimit, report, startProducer, startWorker, type JobView } from './helpers.js';

const RUNS = Number(process.env.CHAOS_FUZZ_RUNS ?? 2_500);
const SEED = Number(process.env.CHAOS_FUZZ_SEED ?? 424_242);
const MAX_REQUEST_BYTES = 256 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;

interface FuzzRequest {
  /** What kind of request this is, for the histogram and for failure reports (never the content). */
  kind: string;
  method: string;
  path: string;
  headers: [string, string][];
  body?: Buffer;
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  chunked?: boolean;
  /** A valid job (or bulk of valid jobs): a 202 must be followed by completion. */
  valid?: 'single' | 'bulk';
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP

function serialize(req: FuzzRequest, host: string): Buffer {
  const lines = [`${req.method} ${req.path} HTTP/1.1`, `Host: ${host}`, 'Connection: close'];
  for (const [name, value] of req.headers) lines.push(`${name}: ${value}`);
  let body = req.body ?? Buffer.alloc(0);
  if (req.body !== undefined) {
    if (req.chunked) {
      lines.push('Transfer-Encoding: chunked');
      const parts: Buffer[] = [];
      for (let i = 0; i < body.length; i += 4_096) {
        const chunk = body.subarray(i, i + 4_096);
        parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'), chunk, Buffer.from('\r\n', 'latin1'));
      }
      parts.push(Buffer.from('0\r\n\r\n', 'latin1'));
      body = Buffer.concat(parts);
    } else {
      lines.push(`Content-Length: ${body.length}`);
    }
  }
  // latin1: header bytes go out exactly as generated (including bytes ≥ 0x80).
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
}

/** Sends one request; resolves with the final response, or a reason it got none. */
function send(port: number, req: FuzzRequest): Promise<RawResponse | { none: 'closed' | 'timeout' | 'error'; detail: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ none: 'timeout', detail: `no complete answer within ${REQUEST_TIMEOUT_MS} ms` });
    }, REQUEST_TIMEOUT_MS);
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const parsed = parseResponse(Buffer.concat(chunks));
      resolve(parsed ?? { none: 'closed', detail: `closed after ${Buffer.concat(chunks).length} bytes` });
    };
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', finish);
    socket.on('close', finish);
    // The server may answer (413, 415, 401…) and close before reading the whole body: EPIPE or
    // ECONNRESET while we are still writing is fine as long as the answer arrived.
    socket.on('error', () => undefined);
    socket.write(serialize(req, `127.0.0.1:${port}`), () => undefined);
  });
}

function parseResponse(raw: Buffer): RawResponse | undefined {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1]);
    if (!Number.isInteger(status)) return undefined;
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    rest = rest.subarray(end + 4);
    if (status >= 100 && status < 200) continue; // 100 Continue: the real answer follows
    let body = rest;
    if (headers['content-length'] !== undefined) body = rest.subarray(0, Number(headers['content-length']));
    else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(rest);
    return { status, headers, body };
  }
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// Generators

const AUTH_HEADERS: [string, string][] = [
  ['Authorization', `Bearer ${API_KEY}`],
  ['Content-Type', 'application/json'],
];

const json = (value: unknown) => Buffer.from(JSON.stringify(value) ?? 'null', 'utf8');
const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: 1, maxLength: 60 });

/** A job the producer must accept (unless an idempotency key collides) and the worker complete. */
const validJob = fc.record(
  {
    prompt: fc.string({ unit: 'binary', minLength: 1, maxLength: 120 }),
    priority: fc.constantFrom('high', 'normal', 'low'),
    metadata: fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 4 }),
    idempotencyKey: printable,
    systemInstruction: fc.string({ maxLength: 50 }),
    generationConfig: fc.record({ temperature: fc.double({ min: 0, max: 2, noNaN: true }), maxOutputTokens: fc.integer({ min: 1, max: 500 }) }, { requiredKeys: [] }),
  },
  { requiredKeys: ['prompt'] },
);

/** Something shaped like a job with every field possibly wrong. */
const jobLike = fc.record(
  {
    prompt: fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.array(fc.string()), fc.constant('')),
    contents: fc.oneof(fc.jsonValue(), fc.array(fc.record({ role: fc.string(), parts: fc.array(fc.object()) }))),
    model: fc.oneof(fc.constantFrom('gemini-3.6-flash', 'gemini-2.5-pro', 'gemini-embedding-001', 'nope'), fc.string()),
    systemInstruction: fc.oneof(fc.string(), fc.jsonValue()),
    generationConfig: fc.oneof(fc.object(), fc.record({ temperature: fc.double(), topK: fc.integer(), stopSequences: fc.array(fc.string()) }, { requiredKeys: [] })),
    images: fc.array(fc.record({ mimeType: fc.constantFrom('image/png', 'image/jpeg', 'image/gif', 'text/plain', ''), data: fc.oneof(fc.base64String(), fc.string()) }), { maxLength: 3 }),
    priority: fc.oneof(fc.constantFrom('high', 'normal', 'low', 'urgent'), fc.integer()),
    idempotencyKey: fc.oneof(printable, fc.string({ unit: 'binary' }), fc.constant('k'.repeat(201))),
    cache: fc.oneof(fc.boolean(), fc.record({ ttlSeconds: fc.integer() }), fc.string()),
    metadata: fc.oneof(fc.object(), fc.dictionary(fc.string(), fc.string({ maxLength: 500 }), { maxKeys: 30 })),
    unknownField: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

function deepNesting(depth: number, where: 'array' | 'object' | 'responseSchema' | 'metadata' | 'contents'): Buffer {
  const deepObject = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
  switch (where) {
    case 'array':
      return Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`);
    case 'object':
      return Buffer.from(deepObject);
    case 'responseSchema':
      return Buffer.from(`{"prompt":"deep","generationConfig":{"responseSchema":${deepObject}}}`);
    case 'metadata':
      return Buffer.from(`{"prompt":"deep","metadata":${deepObject}}`);
    case 'contents':
      return Buffer.from(`{"contents":[{"parts":[{"text":"x"}],"role":${deepObject}}]}`);
  }
}

type Body = { kind: string; body: Buffer; valid?: 'single' | 'bulk' };

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue().map((v) => ({ kind: 'json:random', body: json(v) })) },
  { weight: 4, arbitrary: jobLike.map((v) => ({ kind: 'json:job-like', body: json(v) })) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.oneof(validJob, jobLike, fc.jsonValue()), { minLength: 0, maxLength: 6 })
      .map((jobs) => ({ kind: 'json:bulk-mixed', body: json({ jobs }) })),
  },
  { weight: 1, arbitrary: fc.oneof(fc.jsonValue(), fc.constant(Array.from({ length: 1_001 }, () => ({ prompt: 'x' })))).map((jobs) => ({ kind: 'json:bulk-odd', body: json({ jobs }) })) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2_000 }).map((bytes) => ({ kind: 'bytes:garbage', body: Buffer.from(bytes) })) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((bytes) => ({
      kind: 'bytes:invalid-utf8-in-string',
      body: Buffer.concat([Buffer.from('{"prompt":"'), Buffer.from([0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from(bytes).filter((b) => b !== 0x22 && b !== 0x5c), Buffer.from('"}')]),
    })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 10, max: 60_000 }), fc.constantFrom('array' as const, 'object' as const, 'responseSchema' as const, 'metadata' as const, 'contents' as const))
      .map(([depth, where]) => ({ kind: `deep:${where}`, body: deepNesting(depth, where) })),
  },
  {
    weight: 1,
    // Around the size limit: the prompt is sized so the whole body is within ±64 bytes of it.
    arbitrary: fc.tuple(fc.integer({ min: -64, max: 64 }), fc.constantFrom('a', 'é', '😀')).map(([delta, ch]) => {
      const overhead = Buffer.byteLength('{"prompt":""}');
      const target = MAX_REQUEST_BYTES + delta - overhead;
      const count = Math.max(1, Math.floor(target / Buffer.byteLength(ch)));
      return { kind: `size:limit${delta >= 0 ? '+' : ''}${delta}`, body: json({ prompt: ch.repeat(count) }) };
    }),
  },
  { weight: 1, arbitrary: fc.constantFrom('', '{', '{"prompt":', 'null', '[]', '""', '{"prompt":"x"}{"prompt":"y"}', '\u0000').map((s) => ({ kind: 'json:truncated-or-odd', body: Buffer.from(s) })) },
);

const jobId = fc.oneof(
  fc.uuid(),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => encodeURIComponent(s)),
  fc.constantFrom('%', '%E0%A4%A', '%00', '%2F..%2F..', '..', '%FF%FE', 'a%20b', '%C0%AF', '%u0041'),
  fc.integer({ min: 1, max: 20_000 }).map((n) => 'x'.repeat(n)),
  fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 30 }),
);

const query = fc.oneof(
  fc.constant(''),
  fc.constantFrom('?wait=0', '?wait=1', '?wait=-1', '?wait=abc', '?wait=1e9', '?wait=0.01', '?wait=', '?wait=1&wait=2', '?%zz=1', '?a[b][c]=1'),
);

const pathArb = fc.oneof(
  { weight: 5, arbitrary: fc.constant('/v1/jobs') },
  { weight: 3, arbitrary: fc.constant('/v1/jobs/bulk') },
  { weight: 4, arbitrary: fc.tuple(jobId, query).map(([id, q]) => `/v1/jobs/${id}${q}`) },
  { weight: 1, arbitrary: fc.constantFrom('/v1/usage', '/healthz', '/readyz', '/v1', '/v1/', '/', '/v1/jobs/', '/v1//jobs', '/V1/JOBS', '/v1/jobs/bulk/x', '/v1/jobs?x=1') },
  { weight: 1, arbitrary: fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }).map((s) => `/v1/${s}`) }, // raw: spaces, CR/LF, non-ASCII
);

const methodArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE') },
  { weight: 2, arbitrary: fc.constantFrom('PUT', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE') },
  { weight: 1, arbitrary: fc.constantFrom('PROPFIND', 'FOO', 'get', 'P0ST', 'M-SEARCH', 'PURGE', '') },
);

const authArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant<[string, string][]>([['Authorization', `Bearer ${API_KEY}`]]) },
  { weight: 1, arbitrary: fc.constant<[string, string][]>([]) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(fc.constantFrom('Bearer', 'Bearer ', 'Bearer wrong', 'Basic Zm9vOmJhcg==', `bearer ${API_KEY}`, `Bearer  ${API_KEY}`, `Bearer ${API_KEY}x`), printable)
      .map((value): [string, string][] => [['Authorization', value]]),
  },
);

const contentTypeArb = fc.oneof(
  { weight: 8, arbitrary: fc.constant<string | undefined>('application/json') },
  {
    weight: 3,
    arbitrary: fc.constantFrom<string | undefined>(
      undefined,
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'application/json; charset=utf-16',
      'application/json; charset="',
      'Application/JSON',
      'application/problem+json',
      'text/plain',
      'text/json',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/octet-stream',
      '*/*',
      ';;;',
    ),
  },
  { weight: 1, arbitrary: printable },
);

const extraHeaderArb = fc.array(
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom<[string, string]>(
        ['Content-Encoding', 'gzip'],
        ['Content-Encoding', 'deflate'],
        ['Content-Encoding', 'br'],
        ['Content-Encoding', 'identity'],
        ['Content-Encoding', 'x-bogus'],
        ['Expect', '100-continue'],
        ['Accept', 'text/html'],
        ['Accept-Encoding', 'gzip, br'],
        ['X-Forwarded-For', '1.2.3.4, ::1, garbage'],
        ['Idempotency-Key', ''],
        ['Idempotency-Key', 'k'.repeat(300)],
      ),
    },
    { weight: 2, arbitrary: fc.tuple(fc.constant('Idempotency-Key'), printable) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('Idempotency-Key'), fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).map((s) => Buffer.from(s, 'utf8').toString('latin1'))) },
    { weight: 3, arbitrary: fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/), printable) },
    // Past Node's 16 KiB header limit about half the time (431 from Node itself).
    { weight: 1, arbitrary: fc.tuple(fc.constant('X-Huge'), fc.integer({ min: 1_000, max: 32_000 }).map((n) => 'h'.repeat(n))) },
    { weight: 1, arbitrary: fc.tuple(fc.constant('X-Odd'), fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => Buffer.from(b).toString('latin1'))) },
  ),
  { maxLength: 3 },
);

const randomRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({ method: methodArb, path: pathArb, auth: authArb, contentType: contentTypeArb, extra: extraHeaderArb, body: fc.option(bodyArb, { freq: 5 }), chunked: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) })
  .map(({ method, path, auth, contentType, extra, body, chunked }) => ({
    kind: body ? body.kind : 'no-body',
    method,
    path,
    headers: [...auth, ...(contentType !== undefined ? [['Content-Type', contentType] as [string, string]] : []), ...extra],
    ...(body ? { body: body.body } : {}),
    chunked: chunked && body !== null,
  }));

const validRequest: fc.Arbitrary<FuzzRequest> = fc.oneof(
  validJob.map((job) => ({ kind: 'valid:single', method: 'POST', path: '/v1/jobs', headers: [...AUTH_HEADERS], body: json(job), valid: 'single' as const })),
  fc
    .array(validJob.map(({ idempotencyKey: _key, ...job }) => job), { minLength: 1, maxLength: 5 })
    .map((jobs) => ({ kind: 'valid:bulk', method: 'POST', path: '/v1/jobs/bulk', headers: [...AUTH_HEADERS], body: json({ jobs }), valid: 'bulk' as const })),
);

/** Random bodies where they are read: POST /v1/jobs(/bulk), authenticated, as JSON. */
const targetedRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({ path: fc.constantFrom('/v1/jobs', '/v1/jobs/bulk'), body: bodyArb, extra: extraHeaderArb })
  .map(({ path, body, extra }) => ({ kind: `targeted ${body.kind}`, method: 'POST', path, headers: [...AUTH_HEADERS, ...extra], body: body.body }));

const requestArb = fc.oneof({ weight: 10, arbitrary: randomRequest }, { weight: 7, arbitrary: targetedRequest }, { weight: 3, arbitrary: validRequest });

// ---------------------------------------------------------------------------------------------

/** The shape of a request for failure reports: no content, only sizes and names. */
function shape(req: FuzzRequest): string {
  const path = req.path.length > 60 ? `${req.path.slice(0, 40)}…(${req.path.length} chars)` : req.path;
  const headers = req.headers.map(([name, value]) => `${name}(${value.length})`).join(',');
  return `${req.kind} ${JSON.stringify(req.method)} ${JSON.stringify(path)} headers=[${headers}] body=${req.body?.length ?? 'none'}B${req.chunked ? ' chunked' : ''}`;
}

/** Node's own HTTP parser answers bad framing itself (400/413/414/431/417/505), with no body: not the app's answers. */
function isParserRejection(res: RawResponse): boolean {
  return [400, 413, 414, 417, 431, 505].includes(res.status) && res.body.length === 0 && res.headers['content-type'] === undefined;
}

describe('chaos: fuzzing the producer API', () => {
  let redis: TestRedis | undefined;
  let emulator: EmulatorProcess | undefined;
  let producer: Awaited<ReturnType<typeof startProducer>>;
  let port: number;
  const processes: ServiceProcess[] = [];

  beforeAll(async () => {
    assertBuilt();
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ latencyMs: 5 })]);
    const env = baseEnv(redis.url, uniquePrefix('chaosfuzz'), emulator, { MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES), MAX_WAIT_SECONDS: '2' });
    producer = await startProducer(env);
    const worker = await startWorker(env);
    processes.push(producer.proc, worker);
    port = Number(new URL(producer.url).port);
  });
  afterAll(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await emulator?.stop();
    await redis?.stop();
  });

  // Deterministic cases the fuzzer found: deeply nested JSON must be a 4xx, never a 500.
  it.each([
    ['a top-level array', 'array'],
    ['an object', 'object'],
    ['generationConfig.responseSchema', 'responseSchema'],
    ['metadata', 'metadata'],
    ['a content role', 'contents'],
  ] as const)('deeply nested JSON in %s (10,000 levels) is refused with a 4xx JSON error', async (_label, where) => {
    const res = await send(port, { kind: `deep:${where}`, method: 'POST', path: '/v1/jobs', headers: AUTH_HEADERS, body: deepNesting(10_000, where) });
    expect('none' in res).toBe(false);
    const answer = res as RawResponse;
    const body = answer.body.toString('utf8').slice(0, 200);
    expect(answer.status, body).toBeGreaterThanOrEqual(400);
    expect(answer.status, body).toBeLessThan(500);
    expect(JSON.parse(answer.body.toString('utf8'))).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
    expect(isAlive(producer.proc)).toBe(true);
  });

  it(`${RUNS} random and malformed requests: no 5xx, JSON errors, the process stays up, valid jobs complete`, async () => {
    const statuses: string[] = [];
    const kinds: string[] = [];
    const offenders: string[] = [];
    const accepted: string[] = [];
    const acceptedRandom: string[] = [];
    let count = 0;
    const started = Date.now();

    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        count += 1;
        kinds.push(req.kind);
        const res = await send(port, req);
        if ('none' in res) {
          statuses.push(res.none);
          offenders.push(`${res.none} (${res.detail}): ${shape(req)}`);
          return true;
        }
        const parser = isParserRejection(res);
        statuses.push(parser ? `${res.status} (node parser)` : String(res.status));
        if (res.status >= 500) offenders.push(`HTTP ${res.status} ${res.body.toString('utf8').slice(0, 200)}: ${shape(req)}`);
        else if (!parser && req.method !== 'HEAD' && req.path.toLowerCase().startsWith('/v1')) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(res.body.toString('utf8'));
          } catch {
            offenders.push(`HTTP ${res.status} non-JSON body (${res.headers['content-type'] ?? 'no content-type'}): ${shape(req)}`);
          }
          const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
          if (parsed !== undefined && res.status >= 400 && !(typeof error?.code === 'string' && typeof error.message === 'string')) {
            offenders.push(`HTTP ${res.status} error body without { error: { code, message } }: ${shape(req)}`);
          }
          if (parsed !== undefined && res.status === 202) {
            // A random request the producer accepted is a valid job too: it must complete as well.
            const body = parsed as { id?: string; jobs?: { id: string }[] };
            const ids = body.jobs ? body.jobs.map((job) => job.id) : body.id ? [body.id] : [];
            (req.valid ? accepted : acceptedRandom).push(...ids);
          }
        }
        if (req.valid && res.status !== 202 && !(req.valid === 'single' && res.status === 409)) {
          offenders.push(`valid ${req.valid} job answered ${res.status} ${res.body.toString('utf8').slice(0, 200)}: ${shape(req)}`);
        }
        if (count % 100 === 0 && !isAlive(producer.proc)) offenders.push(`producer exited after request ${count}: ${shape(req)}`);
        return true;
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    const fuzzMs = Date.now() - started;

    const aliveAfter = isAlive(producer.proc);
    const healthz = aliveAfter ? (await fetch(`${producer.url}/healthz`)).status : 0;
    // Every accepted job completes (the worker is running).
    const unique = [...new Set([...accepted, ...acceptedRandom])];
    const views = await mapLimit(unique, 16, async (id) => {
      for (let i = 0; i < 30; i++) {
        const view = (await (await fetch(`${producer.url}/v1/jobs/${encodeURIComponent(id)}?wait=2`, { headers: AUTH })).json()) as JobView;
        if (view.status !== 'queued' && view.status !== 'active') return view;
      }
      return { id, status: 'timeout' } as JobView;
    });
    const jobStatuses = histogram(views.map((v) => (v.status === 'failed' ? `failed:${v.error?.code}` : v.status)));
    const statusHistogram = histogram(statuses);
    report('api fuzz', {
      seed: SEED,
      requests: count,
      fuzzMs,
      statuses: statusHistogram,
      kinds: histogram(kinds),
      validJobsAccepted: new Set(accepted).size,
      randomRequestsAccepted: new Set(acceptedRandom).size,
      validJobs: jobStatuses,
      offenders: offenders.length,
      producerAlive: aliveAfter,
      healthz,
      producerErrors: producer.proc.output().split('\n').filter((line) => /unhandled|uncaught|error/i.test(line)).length,
    });

    const reproduce = `reproduce with CHAOS_FUZZ_SEED=${SEED} CHAOS_FUZZ_RUNS=${RUNS}`;
    expect(count).toBeGreaterThanOrEqual(2_000);
    expect(aliveAfter, `producer died (${reproduce})`).toBe(true);
    expect(healthz).toBe(200);
    expect(offenders.slice(0, 8), `${offenders.length} offending requests (${reproduce}); first ones' shapes:`).toEqual([]);
    expect(unique.length).toBeGreaterThan(0);
    expect(jobStatuses).toEqual({ completed: unique.length });
  });
});
