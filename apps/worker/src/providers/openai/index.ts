import { chainLinkBaseShape, type CredentialHealth } from '@prompt-queue/shared';
import { z } from 'zod';
import { credentialFingerprint } from '../fingerprint.js';
import { linkId, type CredentialSource, type ProviderPlugin } from '../plugin.js';
import { classifyOpenAIThrown, OpenAICompatibleProvider } from './openai-compatible.js';

/**
 * Any server speaking OpenAI's `POST /chat/completions` (OpenAI, Azure, Ollama, vLLM, LiteLLM).
 * Link fields besides the common ones: `baseUrl` (required), `apiKeys` (the first is sent),
 * `apiKeyEnv`.
 */
export const openaiLinkSchema = z
  .strictObject({
    ...chainLinkBaseShape,
    provider: z.literal('openai'),
    /** Up to and including the version, e.g. `http://ollama:11434/v1`. Required. */
    baseUrl: z.url(),
    /** The first is sent as `Authorization: Bearer`; none for servers without auth (a local Ollama). */
    apiKeys: z.array(z.string().min(1)).optional(),
    /** Environment variable holding the link's API key(s), comma-separated; read once at start into `apiKeys`. */
    apiKeyEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  })
  .refine((link) => link.model !== '$job', {
    message: 'an openai link needs an explicit model (a Gemini model name means nothing there)',
    path: ['model'],
  });
export type OpenAILink = z.infer<typeof openaiLinkSchema>;

/** The link's one optional key: nothing to check (a server may need none), its fingerprint to show. */
class OpenAIKey implements CredentialSource {
  constructor(readonly apiKey: string | undefined) {}
  async check(): Promise<void> {}
  describe(): CredentialHealth[] {
    return this.apiKey === undefined ? [] : [{ fingerprint: credentialFingerprint(this.apiKey), state: 'unknown' }];
  }
}

export const openaiPlugin: ProviderPlugin<OpenAILink> = {
  name: 'openai',
  linkSchema: openaiLinkSchema,
  limitScope: (link) => link.name ?? 'openai',
  credentials: (link) => new OpenAIKey(link.apiKeys?.[0]),
  create(link, { config, credentials, fetch }) {
    if (!(credentials instanceof OpenAIKey)) throw new TypeError(`link ${linkId(link)}: OpenAI-compatible links take an API key`);
    const { apiKey } = credentials;
    return new OpenAICompatibleProvider({
      name: link.name ?? 'openai',
      baseUrl: link.baseUrl,
      timeoutMs: link.timeoutMs ?? config.gemini.timeoutMs,
      fileUriAllow: config.fileUris.allow,
      ...(apiKey !== undefined ? { apiKey } : {}),
      ...(fetch ? { fetch } : {}),
    });
  },
  classify: (error, { timeoutMs }) => classifyOpenAIThrown(error, { provider: 'openai', timedOut: timeoutMs !== undefined, aborted: false, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }),
};
