// vitest global setup of the `cluster` project: a 3-primary Redis Cluster on loopback for the whole run,
// stopped by pid at the end, and a throwaway XDG_STATE_HOME as in the `unit` project.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startRedisCluster, type RedisClusterProcs } from './redis-procs.js';

let cluster: RedisClusterProcs | undefined;
const stateHome = mkdtempSync(join(tmpdir(), 'drover-test-state-'));

export async function setup(project: TestProject): Promise<void> {
  process.env.XDG_STATE_HOME = stateHome;
  delete process.env.STATE_DIRECTORY;
  cluster = await startRedisCluster(3);
  project.provide('redisCluster', cluster.config().nodes);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
  rmSync(stateHome, { recursive: true, force: true });
}
