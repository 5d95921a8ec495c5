import type { Redis } from 'ioredis';
import { estimateTextTokens, getBlobsBase64, IMAGE_TOKEN_ESTIMATE, type PromptJobData } from '@prompt-queue/shared';
import type { EmbedItem, GenerateRequest, ProviderContent, ProviderPart } from '../providers/provider.js';

/**
 * The provider request of a job: stored parts as Gemini parts, each `{blob}` replaced by its bytes
 * as base64 `inlineData`. A blob that expired fails the job (IMAGE_EXPIRED, from getBlobsBase64).
 * The model is the job's; a chain link calling another model overrides it.
 */
export async function buildRequest(redis: Redis, prefix: string, data: PromptJobData): Promise<GenerateRequest> {
  const shas = data.contents.flatMap((content) => content.parts.flatMap((part) => ('blob' in part ? [part.blob.sha256] : [])));
  const images = await getBlobsBase64(redis, prefix, shas);
  let next = 0;
  const contents: ProviderContent[] = data.contents.map((content) => ({
    role: content.role,
    parts: content.parts.map((part): ProviderPart => {
      if ('blob' in part) return { inlineData: { mimeType: part.blob.mimeType, data: images[next++]! } };
      return part;
    }),
  }));
  return {
    model: data.model,
    contents,
    ...(data.systemInstruction !== undefined ? { systemInstruction: data.systemInstruction } : {}),
    ...(data.generationConfig !== undefined ? { generationConfig: data.generationConfig } : {}),
  };
}

/**
 * One embed job as a batchEmbedContents request: the text parts of its contents as one content
 * (an embedding has one input; images are not embedded by text-embedding models).
 */
export function buildEmbedItem(data: PromptJobData): EmbedItem {
  const parts = data.contents.flatMap((content) => content.parts.flatMap((part) => ('text' in part ? [{ text: part.text }] : [])));
  return {
    content: { role: 'user', parts: parts.length > 0 ? parts : [{ text: '' }] },
    ...(data.taskType !== undefined ? { taskType: data.taskType } : {}),
    ...(data.outputDimensionality !== undefined ? { outputDimensionality: data.outputDimensionality } : {}),
  };
}

/**
 * Input tokens to reserve for a job before its call: the producer's estimate when it made one,
 * else text bytes / 4 per part (errs high, like Google's count per part) plus a fixed cost per image.
 */
export function estimateInputTokens(data: PromptJobData): number {
  if (data.estimatedInputTokens !== undefined) return data.estimatedInputTokens;
  let tokens = data.systemInstruction !== undefined ? estimateTextTokens(data.systemInstruction) : 0;
  for (const content of data.contents) {
    for (const part of content.parts) tokens += 'text' in part ? estimateTextTokens(part.text) : IMAGE_TOKEN_ESTIMATE;
  }
  return tokens;
}
