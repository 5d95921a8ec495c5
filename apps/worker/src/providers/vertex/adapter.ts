import { GoogleGenAI, ServiceTier } from '@google/genai';
import { AuthClient } from 'google-auth-library';
import { isProviderError } from '@prompt-queue/shared';
import { callSignal, CallNotSentError } from '../call-signal.js';
import { checkFileUris } from '../file-uris.js';
import { readAnswer, type WireResponse } from '../gemini/answer.js';
import type { CallOptions, GenerateRequest, GenerateResult, Provider } from '../provider.js';
import { classifyVertexError, errorInfoReason, googleError } from './classify.js';
import type { AccessTokens } from './credentials.js';

export interface VertexProviderOptions {
  /** Recorded as the result's provider. */
  name: string;
  /** Google Cloud project whose Vertex AI quota and billing the calls use. */
  project: string;
  /** Region, e.g. `us-central1`, or `global`. */
  location: string;
  /** @defaultValue the SDK's: `https://{location}-aiplatform.googleapis.com` */
  baseUrl?: string | undefined;
  /** @defaultValue 'v1' */
  apiVersion?: string | undefined;
  /** Per-call timeout, ms (token fetch included). */
  timeoutMs: number;
  /** The credential's process-wide access tokens. */
  tokens: AccessTokens;
  /** Prefixes of `fileData` URIs Vertex may fetch (`gs://…`); Gemini Files API URIs never. */
  fileUriAllow?: readonly string[];
}

/**
 * Vertex AI through `@google/genai` (`vertexai: true`, project, location). Authentication is ours:
 * every call carries `Authorization: Bearer` with the process-wide cached token of its credential
 * ({@link AccessTokens}); the SDK's own retries are off (`retryOptions.attempts: 1`), so the queue's
 * retries are the only ones.
 *
 * A 401 (the cached token expired early or was revoked) drops that token and the call is made once
 * more with a fresh one, inside this `generate`; when the credential itself is refused (the token
 * endpoint says invalid_grant, or Vertex 401s a fresh token, or 403s) the call fails with
 * PROVIDER_AUTH_FAILED and the chain moves to its next link.
 */
export class VertexProvider implements Provider {
  readonly name: string;
  private readonly ai: GoogleGenAI;

  constructor(private readonly options: VertexProviderOptions) {
    this.name = options.name;
    this.ai = new GoogleGenAI({
      vertexai: true,
      project: options.project,
      location: options.location,
      apiVersion: options.apiVersion ?? 'v1',
      httpOptions: {
        ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
        retryOptions: { attempts: 1 },
      },
      // The SDK asks this client for headers on every call; each call also sets its own token.
      googleAuthOptions: { authClient: new CachedTokenAuthClient(options.tokens) },
    });
  }

  async generate(request: GenerateRequest, callOptions: CallOptions = {}): Promise<GenerateResult> {
    checkFileUris(request.contents, 'openai', this.options.fileUriAllow ?? [], this.name);
    const outer = callOptions.signal;
    if (outer?.aborted) throw new CallNotSentError(this.name, outer.reason);
    const timeoutMs = callOptions.timeoutMs ?? this.options.timeoutMs;
    const call$ = callSignal(outer, timeoutMs);
    try {
      for (let attempt = 1; ; attempt++) {
        const token = await abortable(this.options.tokens.token(), call$.signal);
        if (attempt === 1) callOptions.onSend?.();
        try {
          const response = await this.ai.models.generateContent({
            model: request.model,
            contents: request.contents,
            config: {
              ...(request.generationConfig as object | undefined),
              ...(request.systemInstruction !== undefined ? { systemInstruction: request.systemInstruction } : {}),
              ...(request.serviceTier === 'flex' ? { serviceTier: ServiceTier.FLEX } : {}),
              abortSignal: call$.signal,
              httpOptions: { headers: { Authorization: `Bearer ${token}` } },
            },
          });
          return readAnswer(response as WireResponse, { label: 'Vertex AI', provider: this.name, model: request.model });
        } catch (error) {
          const status = (error as { status?: unknown } | null)?.status;
          if (status === 401 && attempt === 1) {
            // Expired early, or minted by a key revoked since: once more with a fresh token.
            this.options.tokens.invalidate(token);
            continue;
          }
          if ((status === 401 || status === 403) && error instanceof Error) {
            const body = googleError(error.message);
            const reason = errorInfoReason(body.details) ?? body.status;
            // 403 is about the project (a missing role, the API disabled): the token itself is fine.
            if (status === 401) this.options.tokens.markRejected(reason || 'UNAUTHENTICATED', body.message, status);
          }
          throw error;
        }
      }
    } catch (error) {
      if (isProviderError(error)) throw error;
      throw classifyVertexError(error, call$.timedOut ? { timeoutMs } : {});
    } finally {
      call$.dispose();
    }
  }

}

/** `promise`, or an AbortError as soon as `signal` aborts (our timeout bounds the token fetch too). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError());
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function abortError(): Error {
  return Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}

/**
 * google-auth-library's client interface over our token cache: what the SDK's GoogleAuth asks for
 * headers. It never loads a key file or ADC of its own.
 */
class CachedTokenAuthClient extends AuthClient {
  constructor(private readonly tokens: AccessTokens) {
    super();
  }

  async getAccessToken(): Promise<{ token: string }> {
    return { token: await this.tokens.token() };
  }

  async getRequestHeaders(): Promise<Headers> {
    return new Headers({ authorization: `Bearer ${await this.tokens.token()}` });
  }

  /** The SDK only asks for headers; nothing here makes requests of its own. */
  request(): never {
    throw new Error('CachedTokenAuthClient only provides headers');
  }
}
