import type { CredentialHealth } from '@prompt-queue/shared';
import type { CredentialSource, PluginContext } from '../plugin.js';
import type { KeySource } from './gemini-provider.js';
import { KeyRing } from './key-ring.js';

/**
 * A Gemini link's API keys: the worker's process-wide ring (GEMINI_API_KEY, GEMINI_API_KEY_FILE,
 * reloaded on SIGHUP) for links without keys of their own, else a private ring of the link's
 * `apiKeys` (`apiKeyEnv`). Either way a {@link KeyRing}: rotation, one probe call per new key, a
 * rejected key leaves the rotation.
 */
export class GeminiCredentials implements CredentialSource {
  constructor(
    /** Where the adapter leases a key per call. */
    readonly ring: KeyRing,
    private readonly linkId: string,
    /** The ring is the worker's (not closed here) rather than the link's own. */
    private readonly shared: boolean,
  ) {}

  static forLink(link: { apiKeys?: string[] | undefined }, linkId: string, context: PluginContext): GeminiCredentials {
    if (link.apiKeys === undefined) return new GeminiCredentials(context.keyRing, linkId, true);
    return new GeminiCredentials(new KeyRing({ keys: link.apiKeys, logger: context.logger }), linkId, false);
  }

  get keys(): KeySource {
    return this.ring;
  }

  async check(): Promise<void> {
    if (this.ring.size > 0) return;
    if (this.shared) {
      throw new Error(
        `GEMINI_API_KEY is required: link ${this.linkId} uses the worker's Gemini API keys; set one or more (comma-separated), or GEMINI_API_KEY_FILE. ` +
          'For local runs start the emulator and point the worker at it (GEMINI_BASE_URL, GEMINI_API_KEY=emulator-key), see README.',
      );
    }
    throw new Error(`link ${this.linkId}: its apiKeys list no usable key`);
  }

  describe(): CredentialHealth[] {
    return this.ring.health();
  }

  close(): void {
    if (!this.shared) this.ring.close();
  }
}
