import { createHash } from 'node:crypto';
import { canonicalJson, type PromptJobData } from '@prompt-queue/shared';

/** sha256 (hex) of the canonical request: what the audit log shows instead of the prompt. */
export function promptSha256(data: PromptJobData): string {
  const request = {
    kind: data.kind,
    model: data.model,
    contents: data.contents,
    systemInstruction: data.systemInstruction,
    generationConfig: data.generationConfig,
    taskType: data.taskType,
    outputDimensionality: data.outputDimensionality,
  };
  return createHash('sha256').update(canonicalJson(request), 'utf8').digest('hex');
}

/** The prompt's text parts, for an audit log configured with `logPrompts` only. */
export function promptText(data: PromptJobData): string {
  return data.contents.flatMap((content) => content.parts.flatMap((part) => ('text' in part ? [part.text] : []))).join('\n');
}
