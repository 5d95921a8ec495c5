export * from './usage.js';
export * from './budgets.js';
export { utcDay, utcMonth, utcHour, nextUtcDayStartMs, nextUtcMonthStartMs } from './periods.js';
