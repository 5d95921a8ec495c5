export { FleetLimiter } from './fleet-limiter.js';
export type {
  FleetLimiterOptions,
  LearnedLimits,
  LimiterState,
  LimitKey,
  ObservedRateLimit,
  PauseReason,
  RateLimits,
  Reservation,
  ReserveResult,
  SettleItem,
} from './types.js';
