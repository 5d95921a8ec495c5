// Deterministic answer content: the same model + request always gives the same text and
// the same token counts, so tests can assert exact values.

import { createHash } from 'node:crypto';
import { DEFAULT_TOKENIZER, type Tokenizer } from './tokens.js';

export type FinishReason = 'STOP' | 'MAX_TOKENS' | 'SAFETY' | 'RECITATION';
export type Outcome = 'ok' | 'blocked' | 'safety' | 'recitation';

export interface Answer {
  outcome: Outcome;
  /** Visible answer text ('' for blocked / safety / recitation). */
  text: string;
  /** Thought summary, only when thinkingConfig.includeThoughts is set. */
  thoughtSummary?: string;
  finishReason?: FinishReason;
  candidatesTokens: number;
  thoughtsTokens: number;
}

export interface AnswerInput {
  model: string;
  /** Stable digest of the request contents (see requestDigest). */
  digest: string;
  lastUserText: string;
  maxOutputTokens?: number;
  /** False for non-thinking models and for thinkingBudget 0. */
  thinking: boolean;
  thinkingBudget?: number;
  includeThoughts?: boolean;
  /** Counts the answer's tokens (the configured one, so output agrees with input). */
  tokenizer?: Tokenizer;
}

const PHRASES = [
  'the queue is steady and every request gets its turn',
  'rate limits are a promise, not a punishment',
  'a retry with backoff is worth two without',
  'tokens counted twice are tokens paid once',
  'latency is a budget that every hop spends',
  'idempotent work makes failures boring',
  'the window rolls so the burst must wait',
  'small batches keep the pipeline honest',
];

/** Thoughts cap when no positive thinkingBudget is given. */
export const DEFAULT_THOUGHTS_CAP = 8192;

/** JSON with sorted keys, so logically equal requests hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function requestDigest(contents: unknown, systemInstruction?: unknown): string {
  return sha256Hex(canonicalJson({ contents, systemInstruction }));
}

export function answerText(model: string, digest: string): string {
  const phrase = PHRASES[parseInt(digest.slice(0, 8), 16) % PHRASES.length] ?? PHRASES[0];
  return `Emulated answer from ${model}: ${phrase} (${digest.slice(0, 8)}).`;
}

function thoughtsFor(candidates: number, input: AnswerInput): number {
  if (!input.thinking) return 0;
  const cap = input.thinkingBudget !== undefined && input.thinkingBudget > 0 ? input.thinkingBudget : DEFAULT_THOUGHTS_CAP;
  return Math.min(2 * Math.max(candidates, 1), cap);
}

export function planAnswer(input: AnswerInput): Answer {
  const trigger = input.lastUserText;
  if (trigger.includes('[[block]]')) return { outcome: 'blocked', text: '', candidatesTokens: 0, thoughtsTokens: 0 };
  if (trigger.includes('[[safety]]')) {
    return { outcome: 'safety', text: '', finishReason: 'SAFETY', candidatesTokens: 0, thoughtsTokens: thoughtsFor(0, input) };
  }
  if (trigger.includes('[[recitation]]')) {
    return { outcome: 'recitation', text: '', finishReason: 'RECITATION', candidatesTokens: 0, thoughtsTokens: thoughtsFor(0, input) };
  }
  const tokenizer = input.tokenizer ?? DEFAULT_TOKENIZER;
  let text = answerText(input.model, input.digest);
  let finishReason: FinishReason = 'STOP';
  const max = input.maxOutputTokens;
  if (max !== undefined && max > 0 && tokenizer.text(text) > max) {
    text = tokenizer.truncate(text, max);
    finishReason = 'MAX_TOKENS';
  }
  const candidatesTokens = tokenizer.text(text);
  const answer: Answer = { outcome: 'ok', text, finishReason, candidatesTokens, thoughtsTokens: thoughtsFor(candidatesTokens, input) };
  if (input.includeThoughts && answer.thoughtsTokens > 0) {
    answer.thoughtSummary = `**Emulated thinking**\n\nPlanning a deterministic answer (${input.digest.slice(0, 8)}).`;
  }
  return answer;
}

/** Splits text into up to `n` chunks at word boundaries (fewer when the text is short). */
export function splitIntoChunks(text: string, n = 3): string[] {
  const words = text.split(/(?<= )/);
  if (words.length < 2) return [text];
  const count = Math.min(n, words.length);
  const size = Math.ceil(words.length / count);
  const chunks: string[] = [];
  for (let i = 0; i < words.length; i += size) chunks.push(words.slice(i, i + size).join(''));
  return chunks;
}

export const SAFETY_CATEGORIES = [
  'HARM_CATEGORY_HATE_SPEECH',
  'HARM_CATEGORY_DANGEROUS_CONTENT',
  'HARM_CATEGORY_HARASSMENT',
  'HARM_CATEGORY_SEXUALLY_EXPLICIT',
] as const;

/** Ratings as Google reports them; `flagged` marks DANGEROUS_CONTENT as the blocking one. */
export function safetyRatings(flagged = false): Record<string, unknown>[] {
  return SAFETY_CATEGORIES.map((category) =>
    flagged && category === 'HARM_CATEGORY_DANGEROUS_CONTENT'
      ? { category, probability: 'HIGH', blocked: true }
      : { category, probability: 'NEGLIGIBLE' },
  );
}
