// Deterministic token counting. The rules are documented in the README; tests and
// benchmarks rely on them staying stable:
//   text: ceil(characters / 4), characters = Unicode code points, so non-empty text is >= 1
//   inlineData / fileData: 258 tokens each, modality from the MIME type
//   function calls/responses, code parts: text rule applied to their JSON

import type { Content, Part } from './validate.js';

export const MEDIA_TOKENS = 258;

export type Modality = 'TEXT' | 'IMAGE' | 'AUDIO' | 'VIDEO' | 'DOCUMENT';

export interface TokenCount {
  total: number;
  byModality: Partial<Record<Modality, number>>;
}

export function textTokens(text: string): number {
  if (text.length === 0) return 0;
  let chars = 0;
  for (const _ of text) chars++;
  return Math.ceil(chars / 4);
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

export function countPart(count: TokenCount, part: Part): void {
  if (typeof part.text === 'string') add(count, 'TEXT', textTokens(part.text));
  if (part.inlineData) add(count, mediaModality(part.inlineData.mimeType), MEDIA_TOKENS);
  if (part.fileData) add(count, mediaModality(part.fileData.mimeType ?? ''), MEDIA_TOKENS);
  for (const key of ['functionCall', 'functionResponse', 'executableCode', 'codeExecutionResult'] as const) {
    if (part[key] !== undefined) add(count, 'TEXT', textTokens(JSON.stringify(part[key])));
  }
}

export function emptyCount(): TokenCount {
  return { total: 0, byModality: {} };
}

/** Input tokens of a request: contents + systemInstruction (+ tools, as their JSON). */
export function countInput(contents: readonly Content[], systemInstruction?: Content, tools?: unknown): TokenCount {
  const count = emptyCount();
  for (const content of contents) for (const part of content.parts) countPart(count, part);
  if (systemInstruction) for (const part of systemInstruction.parts) countPart(count, part);
  if (Array.isArray(tools) && tools.length > 0) add(count, 'TEXT', textTokens(JSON.stringify(tools)));
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
