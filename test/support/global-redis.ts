// vitest global setup: one private redis-server for the whole run unless REDIS_URL is given, and a throwaway
// XDG_STATE_HOME so that nothing a test starts writes drover state into the user's home.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startPrivateRedis, type PrivateRedis } from '../../src/service/private-redis.js';

let redis: PrivateRedis | undefined;
const stateHome = mkdtempSync(join(tmpdir(), 'drover-test-state-'));

export async function setup(project: TestProject): Promise<void> {
  process.env.XDG_STATE_HOME = stateHome;
  delete process.env.STATE_DIRECTORY;
  let url = process.env.REDIS_URL;
  if (!url) {
    redis = await startPrivateRedis();
    url = redis.url;
  }
  project.provide('redisUrl', url);
}

export async function teardown(): Promise<void> {
  await redis?.stop();
  rmSync(stateHome, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The single server's URL (project `unit`, `lab`). */
    redisUrl?: string;
    /** The Cluster's nodes (project `cluster`). */
    redisCluster?: { host: string; port: number }[];
  }
}
