// Builders for Google's error JSON: `{"error":{"code","message","status","details"}}`.
// The SDK reads `error.message` and `error.details` (-> GoogleGenerativeAIFetchError.errorDetails),
// so these shapes must match Google's byte for byte where it matters.

export interface GoogleErrorBody {
  error: { code: number; message: string; status: string; details?: unknown[] };
}

/** An error reply; thrown inside handlers and turned into an HTTP answer by the server. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
    /** Why the call failed, for counters: 'quota' and 'fault' are told apart from plain errors. */
    readonly reason?: 'quota' | 'fault',
  ) {
    super(`HTTP ${status}`);
  }
}

export function googleError(code: number, status: string, message: string, details?: unknown[]): ApiError {
  const error: GoogleErrorBody['error'] = { code, message, status };
  if (details && details.length > 0) error.details = details;
  return new ApiError(code, { error });
}

export interface FieldViolation {
  field?: string;
  description: string;
}

export function badRequest(message: string, violations?: FieldViolation[]): ApiError {
  const details = violations && violations.length > 0
    ? [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: violations }]
    : undefined;
  return googleError(400, 'INVALID_ARGUMENT', message, details);
}

export function invalidJson(detail: string): ApiError {
  const description = `Invalid JSON payload received. ${detail}`;
  return badRequest(description, [{ description }]);
}

export function missingApiKey(): ApiError {
  return googleError(
    403,
    'PERMISSION_DENIED',
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
  );
}

export function invalidApiKey(): ApiError {
  return googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
    {
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'API_KEY_INVALID',
      domain: 'googleapis.com',
      metadata: { service: 'generativelanguage.googleapis.com' },
    },
    {
      '@type': 'type.googleapis.com/google.rpc.LocalizedMessage',
      locale: 'en-US',
      message: 'API key not valid. Please pass a valid API key.',
    },
  ]);
}

export function modelNotFound(model: string, version: string, method: string): ApiError {
  return googleError(
    404,
    'NOT_FOUND',
    `models/${model} is not found for API version ${version}, or is not supported for ${method}. Call ListModels to see the list of available models and their supported methods.`,
  );
}

export type QuotaKind = 'rpm' | 'tpm' | 'rpd';

export interface QuotaErrorInput {
  model: string;
  kind: QuotaKind;
  /** The limit that was hit, reported as quotaValue. */
  limit: number;
  /** Exact time until the window frees enough (or, for rpd, until Pacific midnight); the message shows it, RetryInfo rounds it up. */
  retryAfterMs: number;
  embedding: boolean;
  reason: 'quota' | 'fault';
  /** Injected faults may ask for an exact retryDelay string instead of the rounded one. */
  retryDelayOverride?: string;
}

const QUOTA_IDS = {
  generate: {
    rpm: ['generativelanguage.googleapis.com/generate_content_free_tier_requests', 'GenerateRequestsPerMinutePerProjectPerModel'],
    tpm: ['generativelanguage.googleapis.com/generate_content_free_tier_input_token_count', 'GenerateContentInputTokensPerModelPerMinute'],
    rpd: ['generativelanguage.googleapis.com/generate_content_requests_per_day', 'GenerateRequestsPerDayPerProjectPerModel'],
  },
  embed: {
    rpm: ['generativelanguage.googleapis.com/embed_content_free_tier_requests', 'EmbedContentRequestsPerMinutePerProjectPerModel'],
    tpm: ['generativelanguage.googleapis.com/embed_content_free_tier_input_token_count', 'EmbedContentInputTokensPerModelPerMinute'],
    rpd: ['generativelanguage.googleapis.com/embed_content_requests_per_day', 'EmbedContentRequestsPerDayPerProjectPerModel'],
  },
} as const;

/** Google rounds RetryInfo up to whole seconds, never below 1 s. */
export function retryDelaySeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

export function quotaExceeded(input: QuotaErrorInput): ApiError {
  const [quotaMetric, quotaId] = QUOTA_IDS[input.embedding ? 'embed' : 'generate'][input.kind];
  const exact = (Math.max(0, input.retryAfterMs) / 1000).toFixed(6);
  const message =
    'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n' +
    `* Quota exceeded for metric: ${quotaMetric}, limit: ${input.limit}, model: ${input.model}\n` +
    `Please retry in ${exact}s.`;
  const err = googleError(429, 'RESOURCE_EXHAUSTED', message, [
    {
      '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
      violations: [
        {
          quotaMetric,
          quotaId,
          quotaDimensions: { location: 'global', model: input.model },
          quotaValue: String(input.limit),
        },
      ],
    },
    {
      '@type': 'type.googleapis.com/google.rpc.Help',
      links: [{ description: 'Learn more about Gemini API quotas', url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }],
    },
    {
      '@type': 'type.googleapis.com/google.rpc.RetryInfo',
      retryDelay: input.retryDelayOverride ?? `${retryDelaySeconds(input.retryAfterMs)}s`,
    },
  ]);
  return new ApiError(err.status, err.body, {}, input.reason);
}

export function unavailable(message = 'The model is overloaded. Please try again later.'): ApiError {
  return googleError(503, 'UNAVAILABLE', message);
}

export function internal(
  message = 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
): ApiError {
  return googleError(500, 'INTERNAL', message);
}

export function deadlineExceeded(message = 'Deadline expired before operation could complete.'): ApiError {
  return googleError(504, 'DEADLINE_EXCEEDED', message);
}

/** Why a Vertex call had no valid access token. */
export type UnauthenticatedReason = 'missing' | 'unknown' | 'expired' | 'revoked';

/**
 * Google's 401 for Vertex AI (`aiplatform.googleapis.com`): missing credentials say so, and an
 * expired, revoked or forged token gets "invalid authentication credentials". ErrorInfo.reason
 * tells them apart (CREDENTIALS_MISSING, ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_TYPE_UNSUPPORTED).
 */
export function unauthenticated(reason: UnauthenticatedReason, method: string): ApiError {
  const missing = reason === 'missing';
  const message = missing
    ? 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.'
    : 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
  const errorReason = missing ? 'CREDENTIALS_MISSING' : reason === 'expired' ? 'ACCESS_TOKEN_EXPIRED' : 'ACCESS_TOKEN_TYPE_UNSUPPORTED';
  const rpc = method.charAt(0).toUpperCase() + method.slice(1);
  const err = googleError(401, 'UNAUTHENTICATED', message, [
    {
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: errorReason,
      domain: 'googleapis.com',
      metadata: { method: `google.cloud.aiplatform.v1beta1.PredictionService.${rpc}`, service: 'aiplatform.googleapis.com' },
    },
  ]);
  const challenge = missing ? 'Bearer realm="https://accounts.google.com/"' : 'Bearer realm="https://accounts.google.com/", error="invalid_token"';
  return new ApiError(err.status, err.body, { 'www-authenticate': challenge });
}

/**
 * Vertex AI's 429 under Dynamic Shared Quota: shared capacity ran out, so there is no
 * per-project limit to report. No QuotaFailure, no quotaValue, no RetryInfo.
 */
export function sharedQuotaExhausted(): ApiError {
  const err = googleError(
    429,
    'RESOURCE_EXHAUSTED',
    'Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.',
  );
  return new ApiError(err.status, err.body, {}, 'quota');
}

const VERTEX_QUOTA_IDS = {
  rpm: ['aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model', 'GenerateContentRequestsPerMinutePerProjectPerBaseModel'],
  tpm: ['aiplatform.googleapis.com/generate_content_input_tokens_per_minute_per_base_model', 'GenerateContentInputTokensPerMinutePerBaseModel'],
  rpd: ['aiplatform.googleapis.com/generate_content_requests_per_day_per_project_per_base_model', 'GenerateContentRequestsPerDayPerProjectPerBaseModel'],
} as const;

/** Vertex AI's 429 for a per-project (non-shared) quota: QuotaFailure names aiplatform metrics and the region. */
export function vertexQuotaExceeded(input: { model: string; location: string; kind: QuotaKind; limit: number; retryAfterMs: number }): ApiError {
  const [quotaMetric, quotaId] = VERTEX_QUOTA_IDS[input.kind];
  const err = googleError(
    429,
    'RESOURCE_EXHAUSTED',
    `Quota exceeded for ${quotaMetric} with base model: ${input.model}. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.`,
    [
      {
        '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
        violations: [{ quotaMetric, quotaId, quotaDimensions: { region: input.location, base_model: input.model }, quotaValue: String(input.limit) }],
      },
      { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${retryDelaySeconds(input.retryAfterMs)}s` },
    ],
  );
  return new ApiError(err.status, err.body, {}, 'quota');
}

/** A Flex-tier request shed under load: 503 UNAVAILABLE, retry on standard or later. */
export function flexShed(): ApiError {
  return googleError(503, 'UNAVAILABLE', 'The flex tier is at capacity and this request was shed. Please retry later or use the standard tier.');
}
