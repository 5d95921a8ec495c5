// The models the emulator knows. Names and limits are data so they can follow Google's catalogue.

export type ModelKind = 'generative' | 'embedding';

export interface ModelInfo {
  name: string;
  displayName: string;
  kind: ModelKind;
  /** Thinking models report thoughtsTokenCount. */
  thinking: boolean;
  /** Models that refuse thinkingBudget 0 ("only works in thinking mode"). */
  thinkingRequired: boolean;
  inputTokenLimit: number;
  outputTokenLimit: number;
}

export const GENERATIVE_METHODS = ['generateContent', 'streamGenerateContent', 'countTokens'] as const;
export const EMBEDDING_METHODS = ['embedContent', 'batchEmbedContents', 'countTokens'] as const;
export const ALL_METHODS = ['generateContent', 'streamGenerateContent', 'countTokens', 'embedContent', 'batchEmbedContents'] as const;
export type ModelMethod = (typeof ALL_METHODS)[number];

function gen(name: string, displayName: string, thinkingRequired = false): ModelInfo {
  return { name, displayName, kind: 'generative', thinking: true, thinkingRequired, inputTokenLimit: 1_048_576, outputTokenLimit: 65_536 };
}

function emb(name: string, displayName: string): ModelInfo {
  return { name, displayName, kind: 'embedding', thinking: false, thinkingRequired: false, inputTokenLimit: 2048, outputTokenLimit: 1 };
}

export const MODELS: readonly ModelInfo[] = [
  gen('gemini-3.1-pro-preview', 'Gemini 3.1 Pro Preview', true),
  gen('gemini-3.6-flash', 'Gemini 3.6 Flash'),
  gen('gemini-3.5-flash', 'Gemini 3.5 Flash'),
  gen('gemini-3.5-flash-lite', 'Gemini 3.5 Flash-Lite'),
  gen('gemini-3-flash-preview', 'Gemini 3 Flash Preview'),
  gen('gemini-2.5-pro', 'Gemini 2.5 Pro', true),
  gen('gemini-2.5-flash', 'Gemini 2.5 Flash'),
  gen('gemini-2.5-flash-lite', 'Gemini 2.5 Flash-Lite'),
  emb('gemini-embedding-001', 'Gemini Embedding 001'),
  emb('text-embedding-004', 'Text Embedding 004'),
];

const BY_NAME = new Map(MODELS.map((m) => [m.name, m]));

export function findModel(name: string): ModelInfo | undefined {
  return BY_NAME.get(name);
}

export function isModelMethod(method: string): method is ModelMethod {
  return (ALL_METHODS as readonly string[]).includes(method);
}

export function supportsMethod(model: ModelInfo, method: ModelMethod): boolean {
  const methods: readonly string[] = model.kind === 'generative' ? GENERATIVE_METHODS : EMBEDDING_METHODS;
  return methods.includes(method);
}

/** Shape of one entry of `GET /v1beta/models`. */
export function describeModel(model: ModelInfo): Record<string, unknown> {
  return {
    name: `models/${model.name}`,
    version: '001',
    displayName: model.displayName,
    description: `Emulated ${model.displayName}`,
    inputTokenLimit: model.inputTokenLimit,
    outputTokenLimit: model.outputTokenLimit,
    supportedGenerationMethods: model.kind === 'generative' ? [...GENERATIVE_METHODS] : [...EMBEDDING_METHODS],
    ...(model.kind === 'generative' ? { temperature: 1, topP: 0.95, topK: 64, maxTemperature: 2, thinking: model.thinking } : {}),
  };
}
