import type { StoredContent } from '../queue/payloads.js';

/**
 * What we can see of a prompt before the provider counts it: the quantities its token count is
 * close to linear in. Tokenizers differ most by script (English ≈ 4 ASCII characters a token, code
 * ≈ 3, Japanese/Chinese/Korean ≈ 1 token a character), so ASCII and other characters are apart;
 * images are priced by the provider's own rule from their size; each part adds a rounding step.
 * The calibration (calibration.ts) learns a weight for each from settled calls.
 */
export interface PromptFeatures {
  /** ASCII characters of all text (contents and system instruction). */
  ascii: number;
  /** Other characters (Unicode code points above U+007F). */
  other: number;
  /** Image tokens by the provider's published rule (see `imageTokensByRule`). */
  imageTokens: number;
  /** Parts (text and media), system instruction included. */
  parts: number;
}

export const FEATURE_NAMES = ['ascii', 'other', 'imageTokens', 'parts'] as const satisfies readonly (keyof PromptFeatures)[];

/** Tokens of one image of at most 384 px per side on Gemini 2.x; larger images are tiled. */
export const GEMINI_IMAGE_TILE_TOKENS = 258;
const SMALL_IMAGE_PX = 384;
const TILE_PX = 768;
/**
 * Gemini 3 prices an image by `media_resolution`, not by size; the default for images is high.
 * Calibration scales this when the provider counts otherwise.
 */
const GEMINI_3_IMAGE_TOKENS = 1_120;

/**
 * Gemini's published rule for an image's input tokens. Gemini 2.x: 258 when both sides are at
 * most 384 px, else one 258-token tile per 768×768 block. Gemini 3: a fixed count per resolution.
 * Unknown size (a file reference, an old job): one tile on 2.x.
 */
export function imageTokensByRule(model: string, size: { width: number; height: number } | undefined): number {
  if (/^gemini-3/.test(model)) return GEMINI_3_IMAGE_TOKENS;
  if (!size || (size.width <= SMALL_IMAGE_PX && size.height <= SMALL_IMAGE_PX)) return GEMINI_IMAGE_TILE_TOKENS;
  return Math.ceil(size.width / TILE_PX) * Math.ceil(size.height / TILE_PX) * GEMINI_IMAGE_TILE_TOKENS;
}

/** Features of a stored job's prompt (`contents` as the producer stored them). */
export function promptFeatures(model: string, contents: readonly StoredContent[], systemInstruction?: string): PromptFeatures {
  const features: PromptFeatures = { ascii: 0, other: 0, imageTokens: 0, parts: 0 };
  if (systemInstruction !== undefined) addText(features, systemInstruction);
  for (const content of contents) {
    for (const part of content.parts) {
      if ('text' in part) addText(features, part.text);
      else {
        features.parts += 1;
        const size = 'blob' in part && part.blob.width !== undefined && part.blob.height !== undefined ? { width: part.blob.width, height: part.blob.height } : undefined;
        features.imageTokens += imageTokensByRule(model, size);
      }
    }
  }
  return features;
}

function addText(features: PromptFeatures, text: string): void {
  features.parts += 1;
  // Code units: a character outside the BMP (emoji, rare CJK) counts twice, which errs high.
  let ascii = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) < 0x80) ascii++;
  features.ascii += ascii;
  features.other += text.length - ascii;
}
