import { chainLinkBaseShape, isProviderError, ProviderError } from '@prompt-queue/shared';
import { z } from 'zod';
import { credentialFingerprint } from '../../src/providers/fingerprint.js';
import { linkId, type CredentialSource, type ProviderPlugin } from '../../src/providers/plugin.js';
import type { GenerateRequest, GenerateResult, Provider } from '../../src/providers/provider.js';

/**
 * A provider that answers from memory: the proof that a provider is one folder plus one registry
 * line. Its link takes a `token` (its credential) and the `answer` it prefixes every reply with.
 */
export const toyLinkSchema = z.strictObject({
  ...chainLinkBaseShape,
  provider: z.literal('toy'),
  /** Prefix of every answer. */
  answer: z.string().default('toy answer'),
  /** Its credential; a link without one fails the startup check. */
  token: z.string().min(1).optional(),
});
type ToyLink = z.infer<typeof toyLinkSchema>;

class ToyToken implements CredentialSource {
  constructor(
    private readonly token: string | undefined,
    private readonly link: string,
  ) {}
  async check(): Promise<void> {
    if (this.token === undefined) throw new Error(`link ${this.link}: a toy link needs a token`);
  }
  describe() {
    return this.token === undefined ? [] : [{ fingerprint: credentialFingerprint(this.token), state: 'ok' as const }];
  }
}

class ToyProvider implements Provider {
  readonly name = 'toy';
  constructor(private readonly answer: string) {}
  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const asked = request.contents.flatMap((content) => content.parts.flatMap((part) => ('text' in part ? [part.text] : []))).join(' ');
    // An adapter that throws its own errors unclassified: its plugin's `classify` names them.
    if (asked.includes('refuse me')) throw new TypeError('the toy cannot answer that');
    const inputTokens = asked.split(/\s+/).length;
    return {
      text: `${this.answer}: ${asked}`,
      finishReason: 'STOP',
      usage: { inputTokens, outputTokens: 3, thoughtsTokens: 0, cachedTokens: 0, totalTokens: inputTokens + 3 },
      provider: this.name,
      model: request.model,
    };
  }
}

export const toyPlugin: ProviderPlugin<ToyLink> = {
  name: 'toy',
  linkSchema: toyLinkSchema,
  limitScope: () => 'toy-pool',
  credentials: (link) => new ToyToken(link.token, linkId(link)),
  create: (link) => new ToyProvider(link.answer),
  classify: (error) => {
    if (isProviderError(error)) return error;
    if (error instanceof TypeError) return new ProviderError('PROVIDER_BAD_REQUEST', `toy: ${error.message}`, { disposition: 'fail', cause: error });
    return new ProviderError('INTERNAL', `toy: ${String(error)}`, { disposition: 'backoff', cause: error });
  },
};
