import { chainLinkBaseShape } from '@prompt-queue/shared';
import { z } from 'zod';
import { linkId, type ProviderPlugin } from '../plugin.js';
import { classifyProviderError } from './classify.js';
import { GeminiCredentials } from './credentials.js';
import { GeminiProvider } from './gemini-provider.js';

/**
 * The Gemini API through `@google/generative-ai`, with API keys (the worker's key ring, or the
 * link's own). Link fields besides the common ones: `baseUrl`, `apiKeys`, `apiKeyEnv`.
 */
export const geminiLinkSchema = z.strictObject({
  ...chainLinkBaseShape,
  provider: z.literal('gemini'),
  /** Endpoint. @defaultValue gemini.baseUrl */
  baseUrl: z.url().optional(),
  /** API keys of this link (another Google Cloud project: more quota). @defaultValue the worker's (gemini.apiKeys, gemini.apiKeyFile) */
  apiKeys: z.array(z.string().min(1)).optional(),
  /** Environment variable holding the link's API key(s), comma-separated; read once at start into `apiKeys`. */
  apiKeyEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
});
export type GeminiLink = z.infer<typeof geminiLinkSchema>;

export const geminiPlugin: ProviderPlugin<GeminiLink> = {
  name: 'gemini',
  linkSchema: geminiLinkSchema,
  // Quota is per Cloud project and model: the project is the key's third part.
  limitScope: (link) => link.name ?? 'gemini',
  credentials: (link, context) => GeminiCredentials.forLink(link, linkId(link), context),
  create(link, { config, credentials }) {
    if (!(credentials instanceof GeminiCredentials)) throw new TypeError(`link ${linkId(link)}: Gemini links take Gemini API keys`);
    return new GeminiProvider({
      keyRing: credentials.keys,
      baseUrl: link.baseUrl ?? config.gemini.baseUrl,
      apiVersion: config.gemini.apiVersion,
      timeoutMs: link.timeoutMs ?? config.gemini.timeoutMs,
      fileUriAllow: config.fileUris.allow,
    });
  },
  classify: classifyProviderError,
};
