/**
 * Which `fileData.fileUri` values a job may carry, and which chain link may receive them.
 *
 * A file URI is a URL someone else fetches: Google for a Gemini link, the server behind an
 * OpenAI-compatible link (vLLM, LiteLLM… fetch `image_url` themselves, from inside our network).
 * Left unchecked, a tenant could make a backend fetch `http://169.254.169.254/…` (cloud metadata)
 * or any internal address. So by default only Gemini Files API URIs pass, and only to Gemini links;
 * anything else needs a prefix in `fileUris.allow` (CONFIG_FILE).
 *
 * The producer refuses other URIs upfront (400 VALIDATION_FAILED); the worker checks again before
 * each call (jobs queued before a config change, or by an older producer) and fails such a job
 * alone with FILE_URI_NOT_ALLOWED.
 */

/**
 * A File's `uri` as the Files API returns it (`files.get`, `media.upload`):
 * `https://generativelanguage.googleapis.com/v1beta/files/<name>`, name 1-40 of a-z 0-9 and `-`.
 * The short form `files/<name>` is the File's resource *name*, not a URI; Google documents `uri`
 * for `fileData.fileUri`, so the short form is refused with a hint.
 */
export const GEMINI_FILES_URI = /^https:\/\/generativelanguage\.googleapis\.com\/v1beta\/files\/[a-z0-9-]{1,40}$/;

/** The kinds of chain link, as far as file URIs go. */
export type FileUriTarget = 'gemini' | 'openai';

export function isGeminiFileUri(uri: string): boolean {
  return GEMINI_FILES_URI.test(uri);
}

/**
 * Whether `uri` starts with one of the allowed prefixes, both as written and as a parsed URL
 * (so `https://ok.example/a/../../elsewhere` cannot slip past a prefix). Prefixes are validated by
 * the config schema ({@link isValidAllowPrefix}): each is in normalized form and ends with `/`, so
 * a host prefix cannot match `https://ok.example.evil.test/`.
 */
export function isAllowlisted(uri: string, allow: readonly string[]): boolean {
  // Whitespace or control characters: URL parsing drops some, a backend may not.
  if (allow.length === 0 || /\s/.test(uri) || [...uri].some((char) => char.charCodeAt(0) < 0x20 || char.charCodeAt(0) === 0x7f)) return false;
  let normalized: string;
  try {
    normalized = new URL(uri).href;
  } catch {
    return false;
  }
  return allow.some((prefix) => uri.startsWith(prefix) && normalized.startsWith(prefix));
}

/** An allowlist entry: an absolute http(s) or gs URL with a host, ending with `/`. */
export function isValidAllowPrefix(prefix: string): boolean {
  if (!prefix.endsWith('/')) return false;
  try {
    const url = new URL(prefix);
    return ['http:', 'https:', 'gs:'].includes(url.protocol) && url.host !== '' && url.username === '' && url.password === '' && url.href === prefix;
  } catch {
    return false;
  }
}

/**
 * Why `uri` may not be sent to a link of kind `target`, or undefined when it may:
 * - gemini: a Gemini Files API URI, or an allowlisted prefix (e.g. `gs://bucket/` for registered
 *   Cloud Storage buckets, or a public https origin Google may fetch).
 * - openai: an allowlisted prefix only; a Files API URI means nothing outside Google (and the
 *   server would fetch it).
 * The message never quotes the URI (it may carry a signed token).
 */
export function fileUriRefusal(uri: string, target: FileUriTarget, allow: readonly string[]): string | undefined {
  if (isAllowlisted(uri, allow)) return undefined;
  if (isGeminiFileUri(uri)) {
    return target === 'gemini' ? undefined : 'is a Gemini Files API URI, which only Gemini links can take';
  }
  if (/^files\/[a-z0-9-]{1,40}$/.test(uri)) {
    return "is a File's name: send its uri, https://generativelanguage.googleapis.com/v1beta/files/<name>";
  }
  return allow.length === 0
    ? 'must be a Gemini Files API URI (https://generativelanguage.googleapis.com/v1beta/files/<name>); other URLs need a prefix in fileUris.allow'
    : 'must be a Gemini Files API URI or start with a prefix in fileUris.allow';
}

/** Why `uri` may not be stored in a job at all (sent to no link), or undefined. */
export function jobFileUriRefusal(uri: string, allow: readonly string[]): string | undefined {
  // A job may go to any link of its chain; the worker checks each link again.
  return fileUriRefusal(uri, 'gemini', allow);
}
