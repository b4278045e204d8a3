// drover's version, read from its package.json: two levels up from src/domain/ and from dist/domain/, so the
// sources (tsx) and the compiled package both find it.
import { createRequire } from 'node:module';

export const DROVER_VERSION: string = (
  createRequire(import.meta.url)('../../package.json') as { version: string }
).version;
