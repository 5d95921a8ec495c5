// Deterministic embeddings: values come from sha256 of the text in counter mode, then are
// L2-normalised, so equal texts embed equally and different texts almost surely differ.

import { createHash } from 'node:crypto';
import { badRequest } from './errors.js';
import { countInput, DEFAULT_TOKENIZER, type Tokenizer } from './tokens.js';
import { isRecord, normalizeKeys, validateContent, Violations, type Content } from './validate.js';

export const DEFAULT_DIMENSION = 768;
export const MAX_DIMENSION = 3072;
export const MAX_BATCH = 100;

const TASK_TYPES = [
  'TASK_TYPE_UNSPECIFIED', 'RETRIEVAL_QUERY', 'RETRIEVAL_DOCUMENT', 'SEMANTIC_SIMILARITY', 'CLASSIFICATION',
  'CLUSTERING', 'QUESTION_ANSWERING', 'FACT_VERIFICATION', 'CODE_RETRIEVAL_QUERY',
];
const EMBED_FIELDS = ['content', 'taskType', 'title', 'outputDimensionality', 'model'] as const;

export function embedText(text: string, dimension = DEFAULT_DIMENSION): number[] {
  const raw: number[] = [];
  for (let block = 0; raw.length < dimension; block++) {
    const digest = createHash('sha256').update(`${block}:${text}`).digest();
    for (let i = 0; i + 1 < digest.length && raw.length < dimension; i += 2) {
      raw.push(digest.readUInt16BE(i) / 32767.5 - 1);
    }
  }
  const norm = Math.sqrt(raw.reduce((s, x) => s + x * x, 0)) || 1;
  return raw.map((x) => Math.round((x / norm) * 1e8) / 1e8);
}

export interface EmbedRequest { content: Content; taskType?: string; title?: string; outputDimensionality?: number; model?: string }

export function contentText(content: Content): string {
  return content.parts.map((p) => (typeof p.text === 'string' ? p.text : JSON.stringify(p))).join('\n');
}

export function parseEmbedRequest(raw: unknown, at: string, v: Violations, maxDimension: number): EmbedRequest | undefined {
  if (!isRecord(raw)) {
    v.invalid(at || 'request', 'Invalid JSON payload received. Expected an object.');
    return undefined;
  }
  const req = normalizeKeys(raw, EMBED_FIELDS, v, at || undefined);
  const prefix = at ? `${at}.` : '';
  if (req.content === undefined) {
    v.invalid(`${prefix}content`, `* EmbedContentRequest.${prefix}content: content is not specified`);
    return undefined;
  }
  const content = validateContent(req.content, `${prefix}content`, v, false);
  if (req.taskType !== undefined && (typeof req.taskType !== 'string' || !TASK_TYPES.includes(req.taskType))) {
    v.invalid(`${prefix}task_type`, `Invalid value at '${prefix}task_type' (type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), ${JSON.stringify(req.taskType)}`);
  }
  const dim = req.outputDimensionality;
  if (dim !== undefined && (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > maxDimension)) {
    v.invalid(`${prefix}output_dimensionality`, `* EmbedContentRequest.${prefix}output_dimensionality: Output dimensionality must be between 1 and ${maxDimension}.`);
  }
  if (!content) return undefined;
  return {
    content,
    ...(typeof req.taskType === 'string' ? { taskType: req.taskType } : {}),
    ...(typeof dim === 'number' ? { outputDimensionality: dim } : {}),
    ...(typeof req.model === 'string' ? { model: req.model } : {}),
  };
}

export interface EmbedResult { body: unknown; inputTokens: number }

function maxDimensionFor(model: string): number {
  return model === 'text-embedding-004' ? DEFAULT_DIMENSION : MAX_DIMENSION;
}

export function embedContent(model: string, body: unknown, tokenizer: Tokenizer = DEFAULT_TOKENIZER): EmbedResult {
  const v = new Violations();
  const req = parseEmbedRequest(body, '', v, maxDimensionFor(model));
  const err = v.toError();
  if (err) throw err;
  if (!req) throw badRequest('Invalid JSON payload received.');
  return {
    body: { embedding: { values: embedText(contentText(req.content), req.outputDimensionality ?? DEFAULT_DIMENSION) } },
    inputTokens: countInput([req.content], undefined, undefined, { tokenizer }).total,
  };
}

export function batchEmbedContents(model: string, body: unknown, tokenizer: Tokenizer = DEFAULT_TOKENIZER): EmbedResult {
  const v = new Violations();
  if (!isRecord(body)) throw badRequest('Invalid JSON payload received. Expected an object.');
  const top = normalizeKeys(body, ['requests'], v);
  const first = v.toError();
  if (first) throw first;
  const raw = top.requests;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw badRequest('* BatchEmbedContentsRequest.requests: requests is not specified', [{ field: 'requests', description: 'requests is not specified' }]);
  }
  if (raw.length > MAX_BATCH) {
    throw badRequest(`* BatchEmbedContentsRequest.requests: at most ${MAX_BATCH} requests can be in one batch`, [
      { field: 'requests', description: `at most ${MAX_BATCH} requests can be in one batch` },
    ]);
  }
  const requests = raw.map((r, i) => parseEmbedRequest(r, `requests[${i}]`, v, maxDimensionFor(model)));
  requests.forEach((r, i) => {
    if (r?.model !== undefined && r.model.replace(/^models\//, '') !== model) {
      v.invalid(`requests[${i}].model`, `* BatchEmbedContentsRequest.requests[${i}].model: Model names in the requests must match the model in the URL (models/${model}).`);
    }
  });
  const err = v.toError();
  if (err) throw err;
  let inputTokens = 0;
  const embeddings = requests.map((r) => {
    if (!r) return { values: [] };
    inputTokens += countInput([r.content], undefined, undefined, { tokenizer }).total;
    return { values: embedText(contentText(r.content), r.outputDimensionality ?? DEFAULT_DIMENSION) };
  });
  return { body: { embeddings }, inputTokens };
}
