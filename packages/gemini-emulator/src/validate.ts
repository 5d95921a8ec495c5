// Request validation in Google's style: unknown fields and malformed parts are 400
// INVALID_ARGUMENT with google.rpc.BadRequest field violations. Proto JSON accepts both
// lowerCamel and snake_case names, so both are accepted here and normalised to camelCase.

import { badRequest, type ApiError, type FieldViolation } from './errors.js';

export interface InlineData { mimeType: string; data: string }
export interface FileData { mimeType?: string; fileUri: string }

export interface Part {
  text?: string;
  thought?: boolean;
  inlineData?: InlineData;
  fileData?: FileData;
  functionCall?: unknown;
  functionResponse?: unknown;
  executableCode?: unknown;
  codeExecutionResult?: unknown;
  [key: string]: unknown;
}

export interface Content { role?: string; parts: Part[] }

export interface ThinkingConfig { thinkingBudget?: number; includeThoughts?: boolean; thinkingLevel?: string }

export interface GenerationConfig {
  maxOutputTokens?: number;
  temperature?: number;
  stopSequences?: string[];
  thinkingConfig?: ThinkingConfig;
  /** Gemini 3 per-image token budget; normalised to the enum name. */
  mediaResolution?: string;
  [key: string]: unknown;
}

export interface GenerateRequest {
  contents: Content[];
  systemInstruction?: Content;
  generationConfig?: GenerationConfig;
  safetySettings?: unknown[];
  cachedContent?: string;
  tools?: unknown[];
  toolConfig?: unknown;
  model?: string;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toCamel(name: string): string {
  return name.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

export function toSnake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Collects violations so one 400 can list them all, as Google does. */
export class Violations {
  readonly list: FieldViolation[] = [];

  unknownField(name: string, at?: string): void {
    const where = at ? ` at '${at}'` : '';
    this.list.push({ ...(at ? { field: at } : {}), description: `Invalid JSON payload received. Unknown name "${name}"${where}: Cannot find field.` });
  }

  invalid(field: string, description: string): void {
    this.list.push({ field, description });
  }

  toError(): ApiError | undefined {
    if (this.list.length === 0) return undefined;
    return badRequest(this.list.map((v) => v.description).join('\n'), this.list);
  }
}

/** Copies `obj` with camelCase keys, reporting keys outside `known`. */
export function normalizeKeys(obj: Record<string, unknown>, known: readonly string[], violations: Violations, at?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    const camel = toCamel(key);
    if (!known.includes(camel)) {
      violations.unknownField(key, at);
      continue;
    }
    if (value !== undefined && value !== null) out[camel] = value;
  }
  return out;
}

const REQUEST_FIELDS = ['contents', 'systemInstruction', 'generationConfig', 'safetySettings', 'cachedContent', 'tools', 'toolConfig', 'model', 'labels', 'serviceTier'] as const;
const CONTENT_FIELDS = ['role', 'parts'] as const;
const PART_FIELDS = [
  'text', 'thought', 'thoughtSignature', 'inlineData', 'fileData', 'functionCall', 'functionResponse',
  'executableCode', 'codeExecutionResult', 'videoMetadata', 'partMetadata',
] as const;
const DATA_FIELDS = ['text', 'inlineData', 'fileData', 'functionCall', 'functionResponse', 'executableCode', 'codeExecutionResult'] as const;
const GENERATION_CONFIG_FIELDS = [
  'stopSequences', 'responseMimeType', 'responseSchema', 'responseJsonSchema', 'responseModalities', 'candidateCount',
  'maxOutputTokens', 'temperature', 'topP', 'topK', 'seed', 'presencePenalty', 'frequencyPenalty', 'responseLogprobs',
  'logprobs', 'enableEnhancedCivicAnswers', 'speechConfig', 'thinkingConfig', 'mediaResolution', 'imageConfig',
] as const;
const THINKING_FIELDS = ['thinkingBudget', 'includeThoughts', 'thinkingLevel'] as const;
// Proto JSON takes an enum by name or by number; index = number.
const MEDIA_RESOLUTIONS = ['MEDIA_RESOLUTION_UNSPECIFIED', 'MEDIA_RESOLUTION_LOW', 'MEDIA_RESOLUTION_MEDIUM', 'MEDIA_RESOLUTION_HIGH'];
const VALID_ROLES = ['user', 'model', 'function'];
const BASE64_RE = /^[A-Za-z0-9+/_-]*={0,2}$/;

function validatePart(raw: unknown, at: string, v: Violations): Part | undefined {
  if (!isRecord(raw)) {
    v.invalid(at, `Invalid value at '${at}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part), expected an object`);
    return undefined;
  }
  const part = normalizeKeys(raw, PART_FIELDS, v, at) as Part;
  const dataFields = DATA_FIELDS.filter((f) => part[f] !== undefined);
  if (dataFields.length === 0) {
    v.invalid(at, `* GenerateContentRequest.${at}.data: required oneof field 'data' must have one initialized field`);
  }
  if (dataFields.length > 1) {
    v.invalid(at, `Invalid value at '${at}': oneof field 'data' is already set. Cannot set '${dataFields[1]}'`);
  }
  if (part.text !== undefined && typeof part.text !== 'string') {
    v.invalid(`${at}.text`, `Invalid value at '${at}.text' (TYPE_STRING), ${JSON.stringify(part.text)}`);
  }
  if (part.inlineData !== undefined) {
    const where = `${at}.inline_data`;
    if (!isRecord(part.inlineData)) {
      v.invalid(where, `Invalid value at '${where}', expected an object`);
    } else {
      const blob = normalizeKeys(part.inlineData, ['mimeType', 'data'], v, where);
      if (typeof blob.mimeType !== 'string' || blob.mimeType === '') {
        v.invalid(`${where}.mime_type`, `* GenerateContentRequest.${where}.mime_type: mime_type must not be empty`);
      }
      if (typeof blob.data !== 'string' || !BASE64_RE.test(blob.data) || blob.data.length % 4 === 1) {
        v.invalid(`${where}.data`, `Invalid value at '${where}.data' (TYPE_BYTES), Base64 decoding failed for "${String(blob.data ?? '').slice(0, 32)}"`);
      }
      part.inlineData = blob as unknown as InlineData;
    }
  }
  if (part.fileData !== undefined) {
    const where = `${at}.file_data`;
    if (!isRecord(part.fileData)) {
      v.invalid(where, `Invalid value at '${where}', expected an object`);
    } else {
      const file = normalizeKeys(part.fileData, ['mimeType', 'fileUri'], v, where);
      if (typeof file.fileUri !== 'string' || file.fileUri === '') {
        v.invalid(`${where}.file_uri`, `* GenerateContentRequest.${where}.file_uri: file_uri must not be empty`);
      }
      part.fileData = file as unknown as FileData;
    }
  }
  return part;
}

export function validateContent(raw: unknown, at: string, v: Violations, checkRole: boolean): Content | undefined {
  if (!isRecord(raw)) {
    v.invalid(at, `Invalid value at '${at}' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), expected an object`);
    return undefined;
  }
  const content = normalizeKeys(raw, CONTENT_FIELDS, v, at);
  if (checkRole && content.role !== undefined && (typeof content.role !== 'string' || !VALID_ROLES.includes(content.role))) {
    v.invalid(`${at}.role`, 'Please use a valid role: user, model.');
  }
  const rawParts = content.parts;
  if (!Array.isArray(rawParts) || rawParts.length === 0) {
    v.invalid(`${at}.parts`, `* GenerateContentRequest.${at}.parts: contents.parts must not be empty.`);
    return undefined;
  }
  const parts: Part[] = [];
  rawParts.forEach((p, i) => {
    const part = validatePart(p, `${at}.parts[${i}]`, v);
    if (part) parts.push(part);
  });
  return { ...(typeof content.role === 'string' ? { role: content.role } : {}), parts };
}

function validateGenerationConfig(raw: unknown, v: Violations): GenerationConfig | undefined {
  if (!isRecord(raw)) {
    v.invalid('generation_config', "Invalid value at 'generation_config', expected an object");
    return undefined;
  }
  const config = normalizeKeys(raw, GENERATION_CONFIG_FIELDS, v, 'generation_config') as GenerationConfig;
  const max = config.maxOutputTokens;
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 0)) {
    v.invalid('generation_config.max_output_tokens', `Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), ${JSON.stringify(max)}`);
  }
  const temperature = config.temperature;
  if (temperature !== undefined && (typeof temperature !== 'number' || temperature < 0 || temperature >= 2.0001)) {
    v.invalid(
      'generation_config.temperature',
      `Unable to submit request because it has a temperature value of ${String(temperature)} but the supported range is from 0 (inclusive) to 2.0001 (exclusive). Update the value and try again.`,
    );
  }
  if (config.stopSequences !== undefined && (!Array.isArray(config.stopSequences) || config.stopSequences.length > 5)) {
    v.invalid('generation_config.stop_sequences', 'Unable to submit request because it has more than 5 stop sequences. Update the value and try again.');
  }
  if (config.mediaResolution !== undefined) {
    const raw = config.mediaResolution as unknown;
    const name = typeof raw === 'number' && Number.isInteger(raw) ? MEDIA_RESOLUTIONS[raw] : raw;
    if (typeof name !== 'string' || !MEDIA_RESOLUTIONS.includes(name)) {
      v.invalid(
        'generation_config.media_resolution',
        `Invalid value at 'generation_config.media_resolution' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig.MediaResolution), ${JSON.stringify(raw)}`,
      );
    } else {
      config.mediaResolution = name;
    }
  }
  if (config.thinkingConfig !== undefined) {
    if (!isRecord(config.thinkingConfig)) {
      v.invalid('generation_config.thinking_config', "Invalid value at 'generation_config.thinking_config', expected an object");
    } else {
      const thinking = normalizeKeys(config.thinkingConfig, THINKING_FIELDS, v, 'generation_config.thinking_config') as ThinkingConfig;
      const budget = thinking.thinkingBudget;
      if (budget !== undefined && (typeof budget !== 'number' || !Number.isInteger(budget) || budget < -1)) {
        v.invalid('generation_config.thinking_config.thinking_budget', `Invalid value at 'generation_config.thinking_config.thinking_budget' (TYPE_INT32), ${JSON.stringify(budget)}`);
      }
      config.thinkingConfig = thinking;
    }
  }
  return config;
}

/** Validates a GenerateContentRequest body; throws ApiError (400) on any problem. */
export function parseGenerateRequest(body: unknown): GenerateRequest {
  const v = new Violations();
  if (!isRecord(body)) {
    throw badRequest('Invalid JSON payload received. Expected an object.', [{ description: 'Invalid JSON payload received. Expected an object.' }]);
  }
  const req = normalizeKeys(body, REQUEST_FIELDS, v);

  const out: GenerateRequest = { contents: [] };
  if (!Array.isArray(req.contents) || req.contents.length === 0) {
    v.invalid('contents', '* GenerateContentRequest.contents: contents is not specified');
  } else {
    req.contents.forEach((c, i) => {
      const content = validateContent(c, `contents[${i}]`, v, true);
      if (content) out.contents.push(content);
    });
  }
  if (req.systemInstruction !== undefined) {
    out.systemInstruction = validateContent(req.systemInstruction, 'system_instruction', v, false);
  }
  if (req.generationConfig !== undefined) out.generationConfig = validateGenerationConfig(req.generationConfig, v);
  if (req.safetySettings !== undefined) {
    if (!Array.isArray(req.safetySettings)) v.invalid('safety_settings', "Invalid value at 'safety_settings', expected a list");
    else out.safetySettings = req.safetySettings;
  }
  if (req.cachedContent !== undefined) {
    if (typeof req.cachedContent !== 'string') v.invalid('cached_content', "Invalid value at 'cached_content' (TYPE_STRING)");
    else out.cachedContent = req.cachedContent;
  }
  if (req.tools !== undefined) {
    if (!Array.isArray(req.tools)) v.invalid('tools', "Invalid value at 'tools', expected a list");
    else out.tools = req.tools;
  }
  if (req.toolConfig !== undefined) out.toolConfig = req.toolConfig;
  if (typeof req.model === 'string') out.model = req.model;

  const err = v.toError();
  if (err) throw err;
  return out;
}

/** Text of the last user turn; test triggers like [[block]] are looked up there. */
export function lastUserText(contents: readonly Content[]): string {
  for (let i = contents.length - 1; i >= 0; i--) {
    const c = contents[i];
    if (c && (c.role === undefined || c.role === 'user')) {
      return c.parts.map((p) => (typeof p.text === 'string' ? p.text : '')).join('');
    }
  }
  return '';
}
