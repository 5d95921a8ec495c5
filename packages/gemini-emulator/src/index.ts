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
export {
  GOOGLE_TOKEN_URL, JWT_BEARER_GRANT, OAuthServer, TOKEN_PATH, publicKeyFingerprint,
  type OAuthAccountStats, type OAuthRejection, type OAuthStats, type ServiceAccountKey, type TokenCheck,
} from './oauth.js';
export {
  createServiceAccountKeyFile, emulatorGoogleAuthOptions, tokenRedirectFetch,
  type ServiceAccountFile, type ServiceAccountFileOptions,
} from './service-account.js';
export { SharedQuota, type SharedQuotaConfig, type SharedQuotaUsage } from './vertex.js';
export { DEFAULT_FLEX, SERVICE_TIERS, requestedTier, type FlexConfig, type ServiceTier } from './tiers.js';
export {
  BATCH_STATES, BatchStore, DEFAULT_BATCH_CONFIG,
  type BatchConfig, type BatchCounters, type BatchRequestError, type BatchState, type BatchSummary,
} from './batches.js';
export type { TierCounters } from './counters.js';
