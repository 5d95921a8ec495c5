import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import {
  ERROR_CATALOG,
  EVENT_ID_HEADER,
  JOB_EVENT_TYPES,
  SIGNATURE_HEADER,
  errorCodeSchema,
  jobEventSchema,
  jobViewSchema,
  webhookEventSchema,
  type Config,
  type ErrorCode,
} from '@prompt-queue/shared';
import { bulkRequestSchema, idempotencyKeySchema, jobRequestSchema, MAX_BULK_JOBS } from '../requests.js';
import {
  acceptedSchema,
  bulkAcceptedSchema,
  errorBodySchema,
  issueSchema,
  livenessSchema,
  readinessSchema,
  scalingResponseSchema,
  usageResponseSchema,
} from '../responses.js';

/**
 * The OpenAPI 3.1 document of the producer, generated from the zod schemas the producer validates
 * requests with (requests.ts) and builds answers from (responses.ts, the shared job view, events and
 * webhook bodies). Nothing here restates a field: a change to a schema changes the document, and
 * test/openapi.test.ts checks every answer of the running producer against it.
 *
 * What this file adds is what the schemas cannot say: the routes, their parameters, and which error
 * codes each route answers with. An error's HTTP status is always its ERROR_CATALOG status.
 */

/** Error codes a route can answer with; grouped by their catalogued status into responses. */
const COMMON_V1: ErrorCode[] = ['UNAUTHORIZED', 'INTERNAL'];
const REDIS: ErrorCode[] = ['REDIS_UNAVAILABLE'];
const JSON_BODY: ErrorCode[] = ['INVALID_JSON', 'VALIDATION_FAILED', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'];

/** Headers of the signed webhook requests (docs/webhooks.md). */
const DELIVERY_ATTEMPT_HEADER = 'PromptQueue-Delivery-Attempt';

const SECURITY = [{ bearerAuth: [] }];

const jobIdParams = z.object({
  id: z.string().meta({ description: 'A job id as returned by POST /v1/jobs. Unknown, malformed and other tenants\' ids all answer 404.' }),
});

/** The resume point of a live-events stream (routes/events.ts `lastEventIdOf`). */
const streamIdSchema = z.string().regex(/^\d+-\d+$/);

function resumeHeaders() {
  return z.object({
    'Last-Event-ID': streamIdSchema.optional().meta({
      description: 'Resume after this event (the `id:` of an event). EventSource sends it on reconnect; it wins over `lastEventId`.',
    }),
  });
}

function resumeQuery() {
  return z.object({
    lastEventId: streamIdSchema.optional().meta({ description: 'Like `Last-Event-ID`, for clients that cannot set headers.' }),
  });
}

export interface OpenApiOptions {
  /** `producer.maxWaitSeconds`: the largest `?wait=` of GET /v1/jobs/{id}, s. */
  maxWaitSeconds: number;
  /** `producer.maxRequestBytes`: the largest JSON body, bytes. */
  maxRequestBytes: number;
}

export function openApiOptions(config: Config): OpenApiOptions {
  return { maxWaitSeconds: config.producer.maxWaitSeconds, maxRequestBytes: config.producer.maxRequestBytes };
}

/**
 * A schema under components/schemas, by zod's own `id` metadata: `registry.register` needs
 * `extendZodWithOpenApi`, which only reaches schemas created after it runs (zod 4 copies methods
 * onto each instance), and the shared schemas are created before this module.
 */
function nameSchema<T extends z.ZodType>(name: string, schema: T): T {
  return schema.meta({ id: name }) as T;
}

/** Builds the document (a plain JSON object). Cheap enough to build once per app. */
export function buildOpenApiDocument(options: OpenApiOptions): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  const components: z.ZodType[] = [];
  const named = <T extends z.ZodType>(name: string, schema: T): T => {
    const withId = nameSchema(name, schema);
    components.push(withId);
    return withId;
  };
  registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'A tenant API key: `Authorization: Bearer <key>`. Every /v1 route needs one.',
  });
  registry.registerComponent('securitySchemes', 'metricsToken', {
    type: 'http',
    scheme: 'bearer',
    description: '`METRICS_TOKEN`, when the deployment sets one (then required on /metrics).',
  });

  named('Error', errorBodySchema());
  const jobRequest = named('JobRequest', jobRequestSchema);
  // The validator parses items one by one (requests.ts prepareBulkRequest); each is a JobRequest.
  const bulkRequest = named(
    'BulkJobRequest',
    bulkRequestSchema.extend({ jobs: z.array(jobRequest).min(1).max(MAX_BULK_JOBS) }),
  );
  const accepted = acceptedSchema;
  // The shared and response schemas name themselves (`.meta({ id })`), so wherever they are nested
  // they are one $ref; these are listed so they are in the document even where only named by a $ref.
  const jobView = jobViewSchema;
  components.push(errorCodeSchema, issueSchema, jobEventSchema, webhookEventSchema, usageResponseSchema, bulkAcceptedSchema);
  // Answers of any path: a method it does not serve, a path that does not exist.
  named('MethodNotAllowedError', errorBodySchema(['METHOD_NOT_ALLOWED']));
  named('NotFoundError', errorBodySchema(['NOT_FOUND']));
  registry.registerComponent('responses', 'MethodNotAllowed', {
    description: 'METHOD_NOT_ALLOWED: any method a documented path does not list.',
    headers: { Allow: { description: 'The methods the path serves, e.g. `GET, DELETE`.', schema: { type: 'string' } } },
    content: { 'application/json': { schema: { $ref: '#/components/schemas/MethodNotAllowedError' } } },
  });
  registry.registerComponent('responses', 'NotFound', {
    description: 'NOT_FOUND: a path that does not exist.',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/NotFoundError' } } },
  });

  // Registered schemas are referenced by identity: use the returned ones in the routes.
  const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

  const jsonContent = (schema: z.ZodType | { $ref: string }) => ({ 'application/json': { schema } });

  registry.registerPath({
    method: 'post',
    path: '/v1/jobs',
    operationId: 'enqueueJob',
    tags: ['jobs'],
    summary: 'Enqueue a prompt job',
    description:
      'Validates the request whole, then adds one job. With an idempotency key (the `Idempotency-Key` header or `idempotencyKey` in the body, equal when both are given) the job id is deterministic: a retry of the same request gets the same job (202 with its current status) and a different request with the same key gets 409 IDEMPOTENCY_CONFLICT.',
    security: SECURITY,
    request: {
      headers: z.object({
        'Idempotency-Key': idempotencyKeySchema.optional().meta({
          description: 'Makes the request idempotent (1-200 printable ASCII characters). Same as `idempotencyKey` in the body.',
        }),
      }),
      body: { required: true, content: jsonContent(jobRequest) },
    },
    responses: {
      202: { description: 'Accepted: a new job, or an idempotent replay with its current status.', content: jsonContent(accepted) },
      ...errorResponses([
        ...COMMON_V1,
        ...REDIS,
        ...JSON_BODY,
        'UNKNOWN_MODEL',
        'WEBHOOK_URL_NOT_ALLOWED',
        'PROMPT_TOO_LARGE',
        'BUDGET_EXCEEDED',
        'IDEMPOTENCY_CONFLICT',
      ]),
    },
  });

  registry.registerPath({
    method: 'post',
    path: '/v1/jobs/bulk',
    operationId: 'enqueueJobs',
    tags: ['jobs'],
    summary: `Enqueue up to ${MAX_BULK_JOBS} jobs, all or none`,
    description:
      'Every item is validated before anything is written: one 400 lists the issues of all items (paths `jobs[i]…`; an item\'s non-validation problem carries its own `code` in `details`). Idempotency keys go in each item; the `Idempotency-Key` header is refused here.',
    security: SECURITY,
    request: { body: { required: true, content: jsonContent(bulkRequest) } },
    responses: {
      202: { description: 'Accepted: one entry per requested job, in order.', content: jsonContent(ref('BulkAccepted')) },
      ...errorResponses([...COMMON_V1, ...REDIS, ...JSON_BODY, 'WEBHOOK_URL_NOT_ALLOWED', 'BUDGET_EXCEEDED', 'IDEMPOTENCY_CONFLICT']),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/jobs/{id}',
    operationId: 'getJob',
    tags: ['jobs'],
    summary: 'A job\'s status and result, optionally waiting for its end',
    security: SECURITY,
    request: {
      params: jobIdParams,
      query: z.object({
        wait: z
          .number()
          .min(0)
          .max(options.maxWaitSeconds)
          .optional()
          .meta({ description: `Long-poll: wait up to this many seconds (0-${options.maxWaitSeconds}) for the job to finish before answering.` }),
      }),
    },
    responses: {
      200: { description: 'The job view; finished jobs carry `result` or `error`.', content: jsonContent(jobView) },
      ...errorResponses([...COMMON_V1, ...REDIS, 'VALIDATION_FAILED', 'NOT_FOUND']),
    },
  });

  registry.registerPath({
    method: 'delete',
    path: '/v1/jobs/{id}',
    operationId: 'cancelJob',
    tags: ['jobs'],
    summary: 'Cancel a queued job',
    description: 'Only a job no worker has taken can be cancelled; an active or finished one answers 409 JOB_NOT_CANCELLABLE.',
    security: SECURITY,
    request: { params: jobIdParams },
    responses: {
      200: { description: 'The cancelled job\'s view (status `cancelled`).', content: jsonContent(jobView) },
      ...errorResponses([...COMMON_V1, ...REDIS, 'NOT_FOUND', 'JOB_NOT_CANCELLABLE']),
    },
  });

  const sseDescription =
    'Server-Sent Events. Each event has `id:` (its stream id, for `Last-Event-ID`), `event:` (its type: ' +
    JOB_EVENT_TYPES.join(', ') +
    ') and `data:` (a JobEvent as one line of JSON; see `x-itemSchema`). `: ping` comments keep the connection alive.';

  registry.registerPath({
    method: 'get',
    path: '/v1/jobs/{id}/events',
    operationId: 'jobEvents',
    tags: ['events'],
    summary: 'Live events of one job',
    description:
      'From the start of the retained history (or after `Last-Event-ID`). The server ends the stream after the job\'s final event (completed, failed, cancelled); a final event rebuilt from the job itself has no `id:`.',
    security: SECURITY,
    request: { params: jobIdParams, headers: resumeHeaders(), query: resumeQuery() },
    responses: {
      200: { description: sseDescription, content: { 'text/event-stream': { schema: { type: 'string' } } } },
      204: { description: 'The job had already ended before the resume point: nothing more will come (EventSource stops reconnecting).' },
      ...errorResponses([...COMMON_V1, ...REDIS, 'VALIDATION_FAILED', 'NOT_FOUND']),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/events',
    operationId: 'tenantEvents',
    tags: ['events'],
    summary: 'Live events of every job of the caller',
    description: 'From now on, or after `Last-Event-ID` within the retained history. The stream stays open.',
    security: SECURITY,
    request: { headers: resumeHeaders(), query: resumeQuery() },
    responses: {
      200: { description: sseDescription, content: { 'text/event-stream': { schema: { type: 'string' } } } },
      ...errorResponses([...COMMON_V1, ...REDIS, 'VALIDATION_FAILED']),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/usage',
    operationId: 'usage',
    tags: ['usage'],
    summary: 'The caller\'s usage today and this month, and its budget',
    security: SECURITY,
    responses: {
      200: { description: 'Usage and budget.', content: jsonContent(ref('Usage')) },
      ...errorResponses([...COMMON_V1, ...REDIS]),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    operationId: 'liveness',
    tags: ['operations'],
    summary: 'Liveness: the process serves HTTP (no auth)',
    responses: { 200: { description: 'Alive.', content: jsonContent(livenessSchema) } },
  });

  registry.registerPath({
    method: 'get',
    path: '/readyz',
    operationId: 'readiness',
    tags: ['operations'],
    summary: 'Readiness: Redis answers (no auth)',
    responses: {
      200: { description: 'Ready.', content: jsonContent(readinessSchema) },
      ...errorResponses(REDIS),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    tags: ['operations'],
    summary: 'Prometheus metrics (text format)',
    security: [{}, { metricsToken: [] }],
    responses: {
      200: { description: 'Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } },
      ...errorResponses(['UNAUTHORIZED']),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/scaling',
    operationId: 'scaling',
    tags: ['operations'],
    summary: "The backlog and the worker count it and the quota call for (KEDA's metrics-api scaler)",
    security: [{}, { metricsToken: [] }],
    responses: {
      200: { description: 'Backlog, recommended workers, and each quota scope.', content: jsonContent(scalingResponseSchema) },
      ...errorResponses(['UNAUTHORIZED', ...REDIS]),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    tags: ['operations'],
    summary: 'This document (no auth)',
    responses: { 200: { description: 'The OpenAPI 3.1 document.', content: { 'application/json': { schema: { type: 'object' } } } } },
  });

  registry.registerPath({
    method: 'get',
    path: '/docs',
    operationId: 'reference',
    tags: ['operations'],
    summary: 'This document as an HTML page (no auth, no scripts)',
    responses: { 200: { description: 'The API reference.', content: { 'text/html': { schema: { type: 'string' } } } } },
  });

  registry.registerWebhook({
    method: 'post',
    path: 'jobEnded',
    operationId: 'jobEnded',
    tags: ['webhooks'],
    summary: 'A job ended (completed, failed or cancelled)',
    description:
      `Sent to the job's \`webhook.url\` (or its tenant's), at least once: deduplicate on \`id\` (also in \`${EVENT_ID_HEADER}\`). ` +
      `Verify \`${SIGNATURE_HEADER}\` against the raw body before parsing it (docs/webhooks.md). Any 2xx acknowledges; anything else, a redirect or a timeout is retried with backoff for about a day.`,
    request: {
      headers: z.object({
        [SIGNATURE_HEADER]: z.string().regex(/^t=\d+(,v1=[0-9a-f]{64})+$/).meta({
          description: '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, one `v1` per secret (two while a secret rotates).',
        }),
        [EVENT_ID_HEADER]: z.string().meta({ description: 'The event id, as `id` in the body: the same for every attempt.' }),
        [DELIVERY_ATTEMPT_HEADER]: z.string().regex(/^\d+$/).meta({ description: '1-based attempt number.' }),
      }),
      body: { required: true, content: jsonContent(ref('WebhookEvent')) },
    },
    responses: {
      '2XX': { description: 'Acknowledged; no further attempt.' },
      default: { description: 'Not acknowledged: retried with backoff, then dead-lettered.' },
    },
  });

  const document = new OpenApiGeneratorV31([...registry.definitions, ...components.map((schema) => ({ type: 'schema' as const, schema }))]).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'prompt-queue',
      version: '1',
      description: [
        'A queue for Gemini prompt jobs. Enqueue with POST /v1/jobs, read results with GET /v1/jobs/{id} (long-poll with `?wait=`), live events as Server-Sent Events, or a signed webhook when a job ends.',
        '',
        'Every error answer is `{ "error": { "code", "message", "details"? } }`; `code` is one of ErrorCode and its HTTP status is fixed per code. ' +
          `JSON bodies are at most ${options.maxRequestBytes} bytes (413 PAYLOAD_TOO_LARGE), sent as \`Content-Type: application/json\` (else 415).`,
        '',
        'Any method a documented path does not list answers 405 METHOD_NOT_ALLOWED with an `Allow` header (components/responses/MethodNotAllowed); an unknown path answers 404 NOT_FOUND (components/responses/NotFound).',
      ].join('\n'),
    },
    servers: [{ url: '/' }],
    tags: [
      { name: 'jobs', description: 'Enqueue, read, wait for and cancel jobs.' },
      { name: 'events', description: 'Live job events (Server-Sent Events).' },
      { name: 'usage', description: 'Usage and budgets.' },
      { name: 'operations', description: 'Health, metrics and this document.' },
      { name: 'webhooks', description: 'Requests prompt-queue sends to you.' },
    ],
  }) as unknown as Record<string, unknown> & { paths: Record<string, Record<string, { responses: Record<string, ResponseObjectLike> }>> };

  // OpenAPI 3.1 has no schema for the items of an event stream (3.2's itemSchema): name it in an extension.
  for (const path of ['/v1/jobs/{id}/events', '/v1/events']) {
    const media = document.paths[path]!.get!.responses['200']!.content!['text/event-stream']!;
    media['x-itemSchema'] = ref('JobEvent');
  }
  return document;
}

interface ResponseObjectLike {
  content?: Record<string, Record<string, unknown>>;
}

/** One response per catalogued status of `codes`, its `code` narrowed to those codes. */
function errorResponses(codes: readonly ErrorCode[]): Record<string, ResponseConfig> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERROR_CATALOG[code].httpStatus;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].sort(([a], [b]) => a - b).map(([status, group]) => [String(status), withHeaders(errorResponse(group), group)]),
  );
}

function errorResponse(codes: readonly ErrorCode[]): ResponseConfig {
  return {
    description: codes.join(', '),
    content: { 'application/json': { schema: errorBodySchema(codes as [ErrorCode, ...ErrorCode[]]) } },
  };
}

/** `WWW-Authenticate` on 401s (auth.ts, bearer.ts) and `Allow` on 405s (http-errors.ts). */
function withHeaders(response: ResponseConfig, codes: readonly ErrorCode[]): ResponseConfig {
  if (codes.includes('UNAUTHORIZED')) {
    return { ...response, headers: { 'WWW-Authenticate': { description: '`Bearer`', schema: { type: 'string', const: 'Bearer' } } } };
  }
  if (codes.includes('METHOD_NOT_ALLOWED')) {
    return { ...response, headers: { Allow: { description: 'The methods the path serves, e.g. `GET, DELETE`.', schema: { type: 'string' } } } };
  }
  return response;
}

