export * from './features.js';
export * from './image-size.js';
export * from './calibration.js';
export * from './calibration-store.js';
