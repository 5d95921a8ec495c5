// Public API of @prompt-queue/gemini-emulator.

export { createEmulator, type Emulator, type EmulatorOptions } from './server.js';
export { EmulatorClient } from './client.js';
export { startEmulatorProcess, mainScriptPath, type EmulatorProcess, type StartEmulatorOptions } from './process.js';
export type { EmulatorControl } from './admin.js';
export type { ActiveFault, FaultKind, FaultSpec } from './faults.js';
export { FAULT_KINDS, FaultRegistry } from './faults.js';
export type { CountersSnapshot, ModelCounters, WindowStats } from './counters.js';
export { keyFingerprint, maxInWindow } from './counters.js';
export { QuotaManager, parseQuotaConfig, type QuotaConfig, type QuotaDecision, type QuotaLimit, type QuotaUsage } from './quotas.js';
export { nextPacificMidnight, pacificDate, pacificOffsetMs } from './pacific.js';
export { MODELS, findModel, type ModelInfo, type ModelKind } from './models.js';
export {
  DEFAULT_TOKENIZER, MEDIA_RESOLUTION_TOKENS, MEDIA_TOKENS, TOKENIZER_PRESETS, Tokenizer, parseTokenizerConfig, textTokens, tiledImageTokens,
  type TokenizerConfig, type TokenizerPreset, type TokenizerSettings,
} from './tokens.js';
export { readImageSize, type ImageSize } from './image-size.js';
export { DEFAULT_DIMENSION, embedText } from './embeddings.js';
export { answerText } from './answers.js';
export { readConfig, type CliConfig } from './config.js';
