// Settings that weaken security are named — in `drover doctor` and in the service's log at start — without
// stopping drover: no_verify, qemu+tcp, plain redis:// to another host, an API on a public address,
// world-readable files holding tokens or keys, and low-entropy tokens. A careful config gets none.
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runDoctor } from '../../src/cli/commands/doctor.js';
import { loadConfig } from '../../src/service/config.js';
import { securityWarnings, tokenEntropyBits } from '../../src/service/security-warnings.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { startHarness } from './service-harness.js';

const STRONG = '9f2c7a41e0b35d86c4a1f7e2093b6d58';
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-warn-'));
  await writeFile(join(dir, 'policy.yaml'), '{}\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configWith(name: string, doc: Record<string, unknown>, mode = 0o600): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, stringify({ policy: { file: 'policy.yaml' }, ...doc }));
  await chmod(path, mode);
  return path;
}

const libvirt = (uri: string, extra: Record<string, unknown> = {}) => ({
  kind: 'libvirt',
  hosts: [{ id: 'kvm-01', uri, ...extra }],
});

describe('security warnings', () => {
  it('estimates token entropy: repeated characters are weak, random hex is strong', () => {
    expect(tokenEntropyBits('a'.repeat(16))).toBe(0);
    expect(tokenEntropyBits('abababababababab')).toBeCloseTo(16);
    expect(tokenEntropyBits(STRONG)).toBeGreaterThan(100);
  });

  it('a careful config gets none', async () => {
    const path = await configWith('good.yaml', {
      hypervisor: libvirt('qemu+tls://kvm-01.example/system'),
      redis: { url: 'rediss://redis.example:6380' },
      api: { tokens: [{ name: 'ops', role: 'admin', value: STRONG }] },
    });
    expect(await securityWarnings(await loadConfig(path, {}), {})).toEqual([]);
  });

  it('names each weak setting by its field', async () => {
    const tokenFile = join(dir, 'viewer.token');
    await writeFile(tokenFile, `${STRONG.toUpperCase()}\n`);
    await chmod(tokenFile, 0o644);
    const path = await configWith(
      'weak.yaml',
      {
        hypervisor: {
          kind: 'libvirt',
          hosts: [
            { id: 'kvm-01', uri: 'qemu+tcp://kvm-01.example/system' },
            { id: 'kvm-02', uri: 'qemu+tls://kvm-02.example/system?no_verify=1' },
          ],
        },
        redis: { url: 'redis://10.1.2.3:6379' },
        api: {
          host: '0.0.0.0',
          tokens: [
            { name: 'ops', role: 'admin', value: 'a'.repeat(16) },
            { name: 'viewer', role: 'read', file: 'viewer.token' },
          ],
        },
      },
      0o644,
    );
    const warnings = await securityWarnings(await loadConfig(path, {}), {});
    const byField = new Map(warnings.map((w) => [w.field, w.message]));
    expect(byField.get('hypervisor.hosts[0].uri')).toMatch(/qemu\+tcp.*neither encrypted nor authenticated/);
    expect(byField.get('hypervisor.hosts[1].uri')).toMatch(/no_verify=1/);
    expect(byField.get('redis.url')).toMatch(/unencrypted/);
    expect(byField.get('api.host')).toMatch(/plain HTTP/);
    expect(byField.get(path)).toMatch(/API tokens.*every local user can read/);
    expect(byField.get('api.tokens[1].file')).toMatch(/every local user can read/);
    expect(byField.get('api.tokens[0]')).toMatch(/token ops has about 0 bits/);
    // Never the token itself.
    expect(JSON.stringify(warnings)).not.toContain('a'.repeat(16));
    expect(JSON.stringify(warnings)).not.toContain(STRONG.toUpperCase());
  });

  it('drover doctor lists them as warnings', async () => {
    const path = await configWith('doctor.yaml', {
      hypervisor: { kind: 'sim', generate: { hosts: 2, vmsPerHost: 1 } },
      redis: { url: redisUrl() },
      api: { tokens: [{ name: 'ops', role: 'admin', value: 'aaaaaaaabbbbbbbb' }] },
    });
    const checks = await runDoctor(path, {});
    const check = checks.find((c) => c.name === 'security api.tokens[0]');
    expect(check?.status).toBe('warn');
    expect(check?.detail).toMatch(/token ops has about 16 bits/);
  }, 60_000);

  it('drover serve logs them at start and runs', async () => {
    const prefix = uniquePrefix('warn');
    const h = await startHarness(redisUrl(), prefix, {
      api: { tokens: [{ name: 'weak', role: 'admin', value: 'x'.repeat(20) }] },
    });
    try {
      const lines = h.logs.filter((l) => l.includes('"security warning"'));
      expect(
        lines.some((l) => l.includes('api.tokens[0]') && l.includes('token weak has about 0 bits')),
      ).toBe(true);
      // The harness writes its config readable by all, with the token in it.
      expect(lines.some((l) => l.includes('every local user can read'))).toBe(true);
      expect(h.logs.join('\n')).not.toContain('x'.repeat(20));
      expect(h.running.apiUrl).not.toBeNull();
    } finally {
      await h.stop();
      const redis = connectRedis();
      await cleanPrefix(redis, prefix);
      redis.disconnect();
    }
  }, 60_000);
});
