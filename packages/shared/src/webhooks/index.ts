export * from './url-guard.js';
export * from './signature.js';
export * from './secrets.js';
export * from './delivery.js';
export * from './outbox.js';
export * from './delivery-errors.js';
