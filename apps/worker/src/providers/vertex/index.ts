import { chainLinkBaseShape } from '@prompt-queue/shared';
import { z } from 'zod';
import { linkId, type ProviderPlugin } from '../plugin.js';
import { VertexProvider } from './adapter.js';
import { classifyVertexError } from './classify.js';
import { AccessTokens, VertexCredentials } from './credentials.js';

/**
 * Gemini models on Vertex AI through `@google/genai` (`vertexai: true`), authenticated with a
 * service account (google-auth-library): the link's `keyFile`, else GOOGLE_APPLICATION_CREDENTIALS,
 * else Application Default Credentials. Link fields besides the common ones: `location`, `keyFile`,
 * `baseUrl`, `tokenUrl`, `apiVersion`; the common `project` is required here (the Google Cloud
 * project Vertex bills, and whose quota it uses). Production sets project, location and
 * credentials; `baseUrl` and `tokenUrl` only point it elsewhere (an emulator in tests).
 */
export const vertexLinkSchema = z.strictObject({
  ...chainLinkBaseShape,
  provider: z.literal('vertex'),
  /** Google Cloud project ID: Vertex's quota and billing. Required. */
  project: z.string().regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'a Google Cloud project ID (6–30 lowercase letters, digits, -)'),
  /** Region of the endpoint, e.g. `us-central1`, `europe-west4`, or `global`. Required. */
  location: z.string().regex(/^(global|[a-z]+(-[a-z]+)*\d+)$/, 'a Vertex AI location, e.g. us-central1 or global'),
  /** Service-account key file (JSON). @defaultValue GOOGLE_APPLICATION_CREDENTIALS, else Application Default Credentials */
  keyFile: z.string().min(1).optional(),
  /** Vertex endpoint. @defaultValue `https://{location}-aiplatform.googleapis.com` */
  baseUrl: z.url().optional(),
  /** OAuth token endpoint the service account's assertion is exchanged at. @defaultValue https://oauth2.googleapis.com/token */
  tokenUrl: z.url().optional(),
  /** Vertex API version. @defaultValue 'v1' */
  apiVersion: z.enum(['v1', 'v1beta1']).optional(),
});
export type VertexLink = z.infer<typeof vertexLinkSchema>;

export const vertexPlugin: ProviderPlugin<VertexLink> = {
  name: 'vertex',
  linkSchema: vertexLinkSchema,
  // Vertex quotas (per-minute limits and Dynamic Shared Quota alike) are per project, region and
  // base model, in a pool apart from the Gemini API's: the scope names the region, the key adds
  // model and project. Two names for one project/region/model share the window (one real quota).
  limitScope: (link) => `vertex:${link.location}`,
  credentials(link, context) {
    const tokens = context.processScoped(
      AccessTokens.scopeKey(link.keyFile, link.tokenUrl),
      () => new AccessTokens({ keyFile: link.keyFile, tokenUrl: link.tokenUrl, logger: context.logger }),
    );
    return new VertexCredentials(tokens, linkId(link));
  },
  create(link, { config, credentials }) {
    if (!(credentials instanceof VertexCredentials)) throw new TypeError(`link ${linkId(link)}: Vertex links take Vertex credentials`);
    return new VertexProvider({
      name: link.name ?? 'vertex',
      project: link.project,
      location: link.location,
      baseUrl: link.baseUrl,
      apiVersion: link.apiVersion,
      timeoutMs: link.timeoutMs ?? config.gemini.timeoutMs,
      tokens: credentials.tokens,
      fileUriAllow: config.fileUris.allow,
    });
  },
  classify: classifyVertexError,
};
