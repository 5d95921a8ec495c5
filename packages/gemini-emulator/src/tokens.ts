// Deterministic token counting. The rules are documented in the README; tests and
// benchmarks rely on them staying stable. With the default tokenizer:
//   text: ceil(characters / 4), characters = Unicode code points, so non-empty text is >= 1
//   inlineData / fileData: 258 tokens each, modality from the MIME type
//   function calls/responses, code parts: text rule applied to their JSON
// A configured tokenizer changes the text ratios and image costs so the emulator can disagree
// with the worker's estimator, as Google's unpublished tokenizer does.

import { readImageSize } from './image-size.js';
import type { Content, Part } from './validate.js';

export const MEDIA_TOKENS = 258;

export type Modality = 'TEXT' | 'IMAGE' | 'AUDIO' | 'VIDEO' | 'DOCUMENT';

export interface TokenCount {
  total: number;
  byModality: Partial<Record<Modality, number>>;
}

export const TOKENIZER_PRESETS = {
  /** Today's rule: 4 characters a token, whatever the script. */
  default: { asciiCharsPerToken: 4, nonAsciiTokensPerChar: 0.25 },
  /** Source code, JSON, numbers: nearer 3 characters a token. */
  code: { asciiCharsPerToken: 3, nonAsciiTokensPerChar: 0.25 },
  /** Japanese, Chinese, Korean: about one token a character, often more. */
  cjk: { asciiCharsPerToken: 4, nonAsciiTokensPerChar: 1.2 },
} as const;

export type TokenizerPreset = keyof typeof TOKENIZER_PRESETS;

/** How the emulator counts tokens. Every field is optional; the defaults reproduce `ceil(code points / 4)` and 258 per image. */
export interface TokenizerConfig {
  /** Starting values; explicit fields below override them. @defaultValue "default" */
  preset?: TokenizerPreset;
  /** ASCII characters per token (> 0). @defaultValue 4 */
  asciiCharsPerToken?: number;
  /** Tokens per non-ASCII code point (> 0); real CJK is about 1.0–1.5. @defaultValue 0.25 */
  nonAsciiTokensPerChar?: number;
  /**
   * Size images from their header bytes: both sides <= 384 px is 258 tokens, otherwise
   * ceil(w/768) × ceil(h/768) tiles of 258. An unreadable header counts 258. @defaultValue false
   */
  imageTiling?: boolean;
}

/** A tokenizer configuration with every field filled in. */
export interface TokenizerSettings {
  preset?: TokenizerPreset;
  asciiCharsPerToken: number;
  nonAsciiTokensPerChar: number;
  imageTiling: boolean;
}

/** Gemini 3 `generationConfig.mediaResolution`: a fixed budget per image. */
export const MEDIA_RESOLUTION_TOKENS: Readonly<Record<string, number>> = {
  MEDIA_RESOLUTION_LOW: 280,
  MEDIA_RESOLUTION_MEDIUM: 560,
  MEDIA_RESOLUTION_HIGH: 1120,
};

/** Images up to this size on both sides cost one tile. */
export const SMALL_IMAGE_PX = 384;
export const TILE_PX = 768;

/** Tokens of an image of this size under the tiling rule. */
export function tiledImageTokens(width: number, height: number): number {
  if (width <= SMALL_IMAGE_PX && height <= SMALL_IMAGE_PX) return MEDIA_TOKENS;
  return Math.ceil(width / TILE_PX) * Math.ceil(height / TILE_PX) * MEDIA_TOKENS;
}

/**
 * ceil() that forgives float error: 5 × 1.2 is 6.000000000000001 in binary and must still be 6.
 * With the default ratios every term is a multiple of 0.25 and exact, so nothing changes there.
 */
function ceilTokens(x: number): number {
  return Math.ceil(x - x * 1e-12);
}

export class Tokenizer {
  readonly settings: Readonly<TokenizerSettings>;

  constructor(config: TokenizerConfig = {}) {
    const base = TOKENIZER_PRESETS[config.preset ?? 'default'];
    this.settings = {
      ...(config.preset !== undefined ? { preset: config.preset } : {}),
      asciiCharsPerToken: config.asciiCharsPerToken ?? base.asciiCharsPerToken,
      nonAsciiTokensPerChar: config.nonAsciiTokensPerChar ?? base.nonAsciiTokensPerChar,
      imageTiling: config.imageTiling ?? false,
    };
  }

  /** ceil(asciiChars / asciiCharsPerToken + nonAsciiChars × nonAsciiTokensPerChar); '' is 0. */
  text(text: string): number {
    if (text.length === 0) return 0;
    let ascii = 0;
    let other = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x80) ascii++;
      else {
        other++;
        // A surrogate pair is one code point; a lone surrogate counts as one, as for...of does.
        if (c >= 0xd800 && c <= 0xdbff) {
          const next = text.charCodeAt(i + 1);
          if (next >= 0xdc00 && next <= 0xdfff) i++;
        }
      }
    }
    return this.tokensFor(ascii, other);
  }

  private tokensFor(ascii: number, other: number): number {
    return ceilTokens(ascii / this.settings.asciiCharsPerToken + other * this.settings.nonAsciiTokensPerChar);
  }

  /** The longest prefix of `text` whose count stays within `max` tokens (for maxOutputTokens). */
  truncate(text: string, max: number): string {
    let ascii = 0;
    let other = 0;
    let end = 0;
    for (const ch of text) {
      if ((ch.codePointAt(0) ?? 0) < 0x80) ascii++;
      else other++;
      if (this.tokensFor(ascii, other) > max) break;
      end += ch.length;
    }
    return text.slice(0, end);
  }

  /**
   * One image: a Gemini 3 mediaResolution budget when the request names one, else tiles from
   * the header when imageTiling is on, else 258. `base64` is absent for fileData parts.
   */
  image(base64: string | undefined, mediaResolution?: string): number {
    const fixed = mediaResolution !== undefined ? MEDIA_RESOLUTION_TOKENS[mediaResolution] : undefined;
    if (fixed !== undefined) return fixed;
    if (!this.settings.imageTiling || base64 === undefined) return MEDIA_TOKENS;
    const size = readImageSize(base64);
    return size ? tiledImageTokens(size.width, size.height) : MEDIA_TOKENS;
  }
}

export const DEFAULT_TOKENIZER = new Tokenizer();

/** The default text rule, ceil(code points / 4); kept for callers that predate the tokenizer. */
export function textTokens(text: string): number {
  return DEFAULT_TOKENIZER.text(text);
}

const TOKENIZER_FIELDS = ['preset', 'asciiCharsPerToken', 'nonAsciiTokensPerChar', 'imageTiling'];

/** Validates a tokenizer config from JSON (env or control API); throws with a readable message. */
export function parseTokenizerConfig(value: unknown): TokenizerConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('tokenizer must be a JSON object like {"asciiCharsPerToken":3,"nonAsciiTokensPerChar":1.2,"imageTiling":true}');
  }
  const raw = value as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!TOKENIZER_FIELDS.includes(key)) throw new Error(`tokenizer has unknown field "${key}" (use ${TOKENIZER_FIELDS.join(', ')})`);
  }
  const config: TokenizerConfig = {};
  if (raw.preset !== undefined && raw.preset !== null) {
    if (typeof raw.preset !== 'string' || !Object.hasOwn(TOKENIZER_PRESETS, raw.preset)) {
      throw new Error(`tokenizer preset must be one of ${Object.keys(TOKENIZER_PRESETS).join(', ')}`);
    }
    config.preset = raw.preset as TokenizerPreset;
  }
  for (const key of ['asciiCharsPerToken', 'nonAsciiTokensPerChar'] as const) {
    const n = raw[key];
    if (n === undefined || n === null) continue;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) throw new Error(`tokenizer ${key} must be a number > 0`);
    config[key] = n;
  }
  if (raw.imageTiling !== undefined && raw.imageTiling !== null) {
    if (typeof raw.imageTiling !== 'boolean') throw new Error('tokenizer imageTiling must be true or false');
    config.imageTiling = raw.imageTiling;
  }
  return config;
}

function mediaModality(mimeType: string): Modality {
  if (mimeType.startsWith('image/')) return 'IMAGE';
  if (mimeType.startsWith('audio/')) return 'AUDIO';
  if (mimeType.startsWith('video/')) return 'VIDEO';
  return 'DOCUMENT';
}

function add(count: TokenCount, modality: Modality, n: number): void {
  if (n <= 0) return;
  count.total += n;
  count.byModality[modality] = (count.byModality[modality] ?? 0) + n;
}

/** What a count depends on besides the parts: the tokenizer and the request's mediaResolution. */
export interface CountOptions {
  tokenizer?: Tokenizer;
  mediaResolution?: string;
}

export function countPart(count: TokenCount, part: Part, options: CountOptions = {}): void {
  const tokenizer = options.tokenizer ?? DEFAULT_TOKENIZER;
  if (typeof part.text === 'string') add(count, 'TEXT', tokenizer.text(part.text));
  for (const media of [part.inlineData, part.fileData]) {
    if (!media) continue;
    const modality = mediaModality(media.mimeType ?? '');
    const data = 'data' in media ? media.data : undefined;
    add(count, modality, modality === 'IMAGE' ? tokenizer.image(data, options.mediaResolution) : MEDIA_TOKENS);
  }
  for (const key of ['functionCall', 'functionResponse', 'executableCode', 'codeExecutionResult'] as const) {
    if (part[key] !== undefined) add(count, 'TEXT', tokenizer.text(JSON.stringify(part[key])));
  }
}

export function emptyCount(): TokenCount {
  return { total: 0, byModality: {} };
}

/** Input tokens of a request: contents + systemInstruction (+ tools, as their JSON). */
export function countInput(contents: readonly Content[], systemInstruction?: Content, tools?: unknown, options: CountOptions = {}): TokenCount {
  const count = emptyCount();
  for (const content of contents) for (const part of content.parts) countPart(count, part, options);
  if (systemInstruction) for (const part of systemInstruction.parts) countPart(count, part, options);
  if (Array.isArray(tools) && tools.length > 0) add(count, 'TEXT', (options.tokenizer ?? DEFAULT_TOKENIZER).text(JSON.stringify(tools)));
  return count;
}

const MODALITY_ORDER: readonly Modality[] = ['TEXT', 'IMAGE', 'AUDIO', 'VIDEO', 'DOCUMENT'];

/** `promptTokensDetails` as Google writes it; TEXT is always present. */
export function modalityDetails(count: TokenCount): { modality: Modality; tokenCount: number }[] {
  return MODALITY_ORDER.filter((m) => m === 'TEXT' || (count.byModality[m] ?? 0) > 0).map((modality) => ({
    modality,
    tokenCount: count.byModality[modality] ?? 0,
  }));
}
