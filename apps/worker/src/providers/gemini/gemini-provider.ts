import {
  GoogleGenerativeAI,
  type BatchEmbedContentsRequest,
  type Content,
  type GenerationConfig as SdkGenerationConfig,
} from '@google/generative-ai';
import { createLogger, isProviderError, ProviderError, type Config } from '@prompt-queue/shared';
import { KeyRing, rejectionReason } from './key-ring.js';
import { callSignal, CallNotSentError } from '../call-signal.js';
import { classifyProviderError } from './classify.js';
import { checkFileUris } from '../file-uris.js';
import { readAnswer, type WireResponse } from './answer.js';
import type { CallOptions, EmbedBatchRequest, EmbedBatchResult, GenerateRequest, GenerateResult, Provider } from '../provider.js';

/** What the adapter needs of a key ring (KeyRing). */
export type KeySource = Pick<KeyRing, 'acquire' | 'succeeded' | 'settled' | 'reject'>;

export interface GeminiProviderOptions {
  /** Fixed keys, used when no `keyRing` is given (a private ring is built from them). */
  apiKeys?: readonly string[];
  /**
   * Where keys come from, one per call (the worker's shared ring: GEMINI_API_KEY and
   * GEMINI_API_KEY_FILE, reloaded on SIGHUP). Takes precedence over `apiKeys`.
   */
  keyRing?: KeySource;
  baseUrl: string;
  apiVersion: string;
  /** Per-call timeout, ms. */
  timeoutMs: number;
  /**
   * URL prefixes besides Gemini Files API URIs that Google may fetch as `fileData` (config
   * `fileUris.allow`); any other file URI fails the job with FILE_URI_NOT_ALLOWED. @defaultValue []
   */
  fileUriAllow?: readonly string[];
}

export function geminiOptionsFromConfig(config: Config): GeminiProviderOptions {
  return { ...config.gemini, fileUriAllow: config.fileUris.allow };
}

/** Google's limit of requests in one batchEmbedContents call. */
export const MAX_EMBED_BATCH = 100;

/**
 * Gemini API adapter over `@google/generative-ai` (deprecated upstream but wire-compatible; kept
 * behind `Provider` so a `@google/genai` adapter can replace it).
 */
export class GeminiProvider implements Provider {
  readonly name = 'gemini';
  private readonly keys: KeySource;
  /** One SDK client per key, built on first use (keys may arrive with a reload). */
  private readonly clients = new Map<string, GoogleGenerativeAI>();

  constructor(private readonly options: GeminiProviderOptions) {
    if (options.keyRing) {
      this.keys = options.keyRing;
    } else {
      if (!options.apiKeys || options.apiKeys.length === 0) throw new Error('GeminiProvider needs at least one API key');
      const logger = createLogger({ service: 'gemini-keys', level: 'warn' });
      this.keys = new KeyRing({ keys: options.apiKeys, logger });
    }
  }

  /**
   * Runs one SDK call with a key from the ring. A key Google rejects (API_KEY_INVALID,
   * PERMISSION_DENIED) leaves the rotation and the call is made again at once with the next key,
   * inside this one `generate`/`embedBatch`: no attempt is spent and the breaker sees only the
   * final outcome. No key left → PROVIDER_AUTH_FAILED (not retryable).
   */
  private async withKey<T>(signal: AbortSignal | undefined, call: (client: GoogleGenerativeAI) => Promise<T>): Promise<T> {
    let lastRejection: unknown;
    for (;;) {
      let lease: Awaited<ReturnType<KeySource['acquire']>>;
      try {
        // A fresh key carries one probe call at a time; the others wait here, abortably.
        lease = await this.keys.acquire(signal);
      } catch (error) {
        if (signal?.aborted) throw new CallNotSentError(this.name, error);
        throw error;
      }
      if (!lease) {
        // The key this call just lost was the last one: Google's own answer says why.
        if (lastRejection !== undefined) throw lastRejection;
        throw new ProviderError('PROVIDER_AUTH_FAILED', 'No usable Gemini API key left: every configured key was rejected (fix the keys and reload with SIGHUP)', {
          disposition: 'fail',
        });
      }
      let client = this.clients.get(lease.key);
      if (!client) this.clients.set(lease.key, (client = new GoogleGenerativeAI(lease.key)));
      try {
        const answer = await call(client);
        this.keys.succeeded(lease.key);
        return answer;
      } catch (error) {
        const reason = rejectionReason(error);
        if (reason) {
          this.keys.reject(lease.key, reason);
          lastRejection = error;
          continue;
        }
        // Any other answer from Google (4xx about the request, 429) proves the key works.
        if (isProviderErrorWithStatus(error)) this.keys.succeeded(lease.key);
        else this.keys.settled(lease.key);
        throw error;
      }
    }
  }

  /** One batchEmbedContents call for all items (a real native batch: one request of the quota). */
  async embedBatch(request: EmbedBatchRequest, callOptions: { signal?: AbortSignal } = {}): Promise<EmbedBatchResult> {
    if (request.items.length > MAX_EMBED_BATCH) throw new RangeError(`at most ${MAX_EMBED_BATCH} embeddings per call`);
    const response = await this.withKey(callOptions.signal, (client) => {
      const model = client.getGenerativeModel({ model: request.model }, { baseUrl: this.options.baseUrl, apiVersion: this.options.apiVersion });
      // outputDimensionality is newer than the SDK's types; the SDK passes the object through.
      const body = {
        requests: request.items.map((item) => ({
          content: item.content as Content,
          ...(item.taskType !== undefined ? { taskType: item.taskType } : {}),
          ...(item.outputDimensionality !== undefined ? { outputDimensionality: item.outputDimensionality } : {}),
        })),
      } as BatchEmbedContentsRequest;
      return this.withTimeout(callOptions.signal, (signal) => model.batchEmbedContents(body, { signal }));
    });
    const embeddings = (response.embeddings ?? []).map((embedding) => embedding.values ?? []);
    if (embeddings.length !== request.items.length) {
      throw new ProviderError('PROVIDER_UNAVAILABLE', `Gemini returned ${embeddings.length} embeddings for ${request.items.length} requests`, {
        disposition: 'backoff',
      });
    }
    return { embeddings, provider: this.name, model: request.model };
  }

  /**
   * Runs an SDK call under our own timeout (cleared when it settles) and classifies its failure.
   * `onSend` is told just before the call goes out, never for one abandoned before it.
   */
  private async withTimeout<T>(outer: AbortSignal | undefined, call: (signal: AbortSignal) => Promise<T>, onSend?: () => void, timeoutMs = this.options.timeoutMs): Promise<T> {
    // The SDK only listens for a later 'abort': a signal aborted already would not stop its fetch,
    // and the abandoned call would run to its end (or our timeout).
    if (outer?.aborted) throw new CallNotSentError(this.name, outer.reason);
    onSend?.();
    // Not AbortSignal.any: it leaks one signal per call once the SDK listens to it (call-signal.ts).
    const call$ = callSignal(outer, timeoutMs);
    try {
      return await call(call$.signal);
    } catch (error) {
      throw classifyProviderError(error, call$.timedOut ? { timeoutMs } : {});
    } finally {
      call$.dispose();
    }
  }

  async generate(request: GenerateRequest, callOptions: CallOptions = {}): Promise<GenerateResult> {
    // Before any key lease: a job carrying a URI Google may not fetch for us fails without a call.
    checkFileUris(request.contents, 'gemini', this.options.fileUriAllow ?? [], this.name);
    // Round-robin over keys. Quota is per Google Cloud project, so keys of one project add no
    // throughput; keys of several projects do.
    const result = await this.withKey(callOptions.signal, (client) => {
      const model = client.getGenerativeModel(
        {
          model: request.model,
          ...(request.systemInstruction !== undefined ? { systemInstruction: request.systemInstruction } : {}),
          // Our schema is a superset of the SDK's type (thinkingConfig…); the SDK passes it through.
          ...(request.generationConfig !== undefined ? { generationConfig: request.generationConfig as SdkGenerationConfig } : {}),
        },
        // No `timeout` here: the SDK never clears that timer, so every call would leave one pending
        // for timeoutMs. Our own timer (withTimeout) is cleared as soon as the call settles.
        { baseUrl: this.options.baseUrl, apiVersion: this.options.apiVersion },
      );
      return this.withTimeout(
        callOptions.signal,
        // The SDK (0.24) has no field for the tier, but sends the request object as it is.
        (signal) => model.generateContent({ contents: request.contents as Content[], ...(request.serviceTier ? { serviceTier: request.serviceTier } : {}) }, { signal }),
        callOptions.onSend,
        callOptions.timeoutMs,
      );
    });
    return readAnswer(result.response as WireResponse, { label: 'Gemini', provider: this.name, model: request.model });
  }

}

function isProviderErrorWithStatus(error: unknown): boolean {
  return isProviderError(error) && error.httpStatus !== undefined && error.httpStatus < 500;
}

