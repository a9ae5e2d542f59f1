export * from './address/address.js';
export * from './address/range.js';
export * from './address/errors.js';
export * from './errors.js';
export * from './backend/backend.js';
export * from './backend/errors.js';
export * from './backend/views.js';
export * from './bitmap/bitmap.js';
