// Oversized input is refused, with an error naming the file or field, before drover holds it in memory:
// every file drover reads (config, policy, token files, the simulator's cluster spec and traces, snapshot
// files, TLS CA/certificate/key files) and every API request body. Devices and FIFOs that never end
// (/dev/zero) are refused too, instead of being read forever.
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/exit-codes.js';
import { loadTrace, MAX_TRACE_FILE_BYTES } from '../../src/hypervisor/sim/traces.js';
import { LibvirtConnectionError } from '../../src/libvirt/errors.js';
import { MAX_PEM_FILE_BYTES, openTransport } from '../../src/libvirt/transport.js';
import { parseLibvirtUri } from '../../src/libvirt/uri.js';
import { loadPolicy, MAX_POLICY_FILE_BYTES } from '../../src/planner/load-policy.js';
import { buildApi } from '../../src/service/api-server.js';
import {
  ConfigError,
  loadConfig,
  MAX_API_BODY_LIMIT_BYTES,
  MAX_CONFIG_FILE_BYTES,
  MAX_TOKEN_FILE_BYTES,
} from '../../src/service/config.js';
import { createHypervisor } from '../../src/service/main.js';
import { FILE_LIMITS, FileTooLarge, readLimited } from '../../src/service/read-limited.js';
import { cleanPrefix, connectRedis, redisUrl, uniquePrefix } from '../support/redis.js';
import { ADMIN_TOKEN, routesOf, startHarness, type Harness } from './service-harness.js';
import { DROVER_BIN } from '../support/serve-process.js';

const TOKEN = 'limits-admin-token-0123456789';
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-limits-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A sparse file of `bytes` (no disk used), starting with `head`. */
async function sized(name: string, bytes: number, head = ''): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, head);
  await truncate(path, bytes);
  return path;
}

/** A minimal valid config (simulator, API on) with `extra` merged at the top level. */
async function configFile(name: string, extra: Record<string, unknown> = {}): Promise<string> {
  await writeFile(join(dir, 'policy.yaml'), '{}\n');
  const path = join(dir, name);
  await writeFile(
    path,
    stringify({
      hypervisor: { kind: 'sim', generate: { hosts: 2, vmsPerHost: 1 } },
      policy: { file: 'policy.yaml', watch: false },
      api: { tokens: [{ name: 'ops', role: 'admin', value: TOKEN }] },
      ...extra,
    }),
  );
  return path;
}

describe('readLimited', () => {
  it('returns the text of any file up to the limit and refuses any file over it, naming the field', async () => {
    const limit = 4096;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 3 * limit }), async (size) => {
        const path = join(dir, 'prop.txt');
        const text = 'x'.repeat(size);
        await writeFile(path, text);
        const got = await readLimited(path, limit, 'some.field', 'test file').catch((e: unknown) => e);
        if (size <= limit) {
          expect(got).toBe(text);
        } else {
          refused++;
          expect(got).toBeInstanceOf(FileTooLarge);
          expect((got as FileTooLarge).code).toBe('file_too_large');
          expect((got as FileTooLarge).message).toContain('some.field: test file');
          expect((got as FileTooLarge).message).toContain(`${size} bytes`);
        }
      }),
      { numRuns: 60 },
    );
    expect(refused).toBeGreaterThan(0);
  });

  it('does not wait for a FIFO that nobody writes to', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const started = Date.now();
    expect(await readLimited(fifo, 1024, 'f', 'test file')).toBe('');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('stops reading an endless device one byte past the limit', async () => {
    const err = await readLimited('/dev/zero', 1024, 'f', 'test file').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileTooLarge);
    expect((err as Error).message).toBe('f: test file /dev/zero is more than the limit of 1024 bytes');
  });
});

describe('files drover reads', () => {
  it('config: over 1 MiB, or /dev/zero, is refused naming the file', async () => {
    expect(MAX_CONFIG_FILE_BYTES).toBe(FILE_LIMITS.config);
    const big = await sized('big.yaml', MAX_CONFIG_FILE_BYTES + 1, '# drover\n');
    const err = await loadConfig(big, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(big);
    expect((err as Error).message).toContain(`${MAX_CONFIG_FILE_BYTES + 1} bytes`);
    await expect(loadConfig('/dev/zero', {})).rejects.toThrow(/more than the limit/);
  });

  it('token file: over 4 KiB, or /dev/zero, is refused naming api.tokens[i].file; at the limit it is read', async () => {
    const atLimit = await sized('token-ok', MAX_TOKEN_FILE_BYTES, `${'t'.repeat(32)}\n`);
    const ok = await loadConfig(
      await configFile('tok-ok.yaml', {
        api: {
          tokens: [
            { name: 'ops', role: 'admin', value: TOKEN },
            { name: 'file', role: 'read', file: atLimit },
          ],
        },
      }),
      {},
    );
    expect(ok.tokens.find((t) => t.name === 'file')?.secret).toBe('t'.repeat(32));

    for (const file of [await sized('token-big', MAX_TOKEN_FILE_BYTES + 1, 'x'.repeat(20)), '/dev/zero']) {
      const cfg = await configFile('tok.yaml', {
        api: {
          tokens: [
            { name: 'ops', role: 'admin', value: TOKEN },
            { name: 'file', role: 'read', file },
          ],
        },
      });
      const err = await loadConfig(cfg, {}).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      const issues = (err as ConfigError).issues;
      expect(issues).toHaveLength(1);
      expect(issues[0]?.path).toBe('api.tokens[1].file');
      expect(issues[0]?.message).toContain(`the limit of ${MAX_TOKEN_FILE_BYTES} bytes`);
    }
  });

  it('policy: over 1 MiB is refused, and a device is refused without reading it', async () => {
    const big = await sized('big-policy.yaml', MAX_POLICY_FILE_BYTES + 1, 'version: 1\n');
    await expect(loadPolicy(big)).rejects.toMatchObject({ code: 'policy_too_large' });
    const started = Date.now();
    await expect(loadPolicy('/dev/zero')).rejects.toMatchObject({ code: 'policy_unreadable' });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('cluster spec: over 64 MiB is refused naming hypervisor.cluster and the file', async () => {
    const big = await sized('cluster.yaml', FILE_LIMITS.clusterSpec + 1, 'hosts: []\n');
    const err = await createHypervisor(
      { kind: 'sim', cluster: big, seed: 1, speed: 1, bandwidthNoisePct: 0, keepPlacement: false },
      dir,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('hypervisor.cluster');
    expect((err as Error).message).toContain(big);
    expect((err as Error).message).toContain(`${FILE_LIMITS.clusterSpec + 1} bytes`);
  });

  it('workload trace: over 64 MiB, or not a regular file, is refused', async () => {
    expect(() => loadTrace('/dev/zero')).toThrow(/not a regular file/);
    const big = await sized('trace.csv', MAX_TRACE_FILE_BYTES + 1, 'Timestamp;CPU usage [%]\n');
    expect(() => loadTrace(big)).toThrow(expect.objectContaining({ code: 'trace_too_large' }));
  });

  it('TLS CA certificate: over 1 MiB is refused before connecting, naming the file', async () => {
    const pki = join(dir, 'pki');
    await mkdir(pki, { recursive: true });
    await writeFile(join(pki, 'clientcert.pem'), 'x');
    await writeFile(join(pki, 'clientkey.pem'), 'x');
    const ca = join(pki, 'cacert.pem');
    await writeFile(ca, '-----BEGIN CERTIFICATE-----\n');
    await truncate(ca, MAX_PEM_FILE_BYTES + 1);
    // Port 9 on loopback: nothing is contacted, the file is refused first.
    const uri = parseLibvirtUri(`qemu+tls://127.0.0.1:9/system?pkipath=${pki}`);
    const err = await openTransport(uri, { connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtConnectionError);
    expect((err as Error).message).toContain(ca);
    expect((err as Error).message).toContain(`the limit of ${MAX_PEM_FILE_BYTES} bytes`);
  });

  it('snapshot file: `drover plan --snapshot` over 128 MiB exits with badInput naming the flag', async () => {
    const big = await sized('snapshot.json', FILE_LIMITS.snapshot + 1, '{"version":1}');
    const run = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [DROVER_BIN, 'plan', '--snapshot', big, '--json'],
        { env: { ...process.env, NO_COLOR: '1' }, timeout: 120_000 },
        (err, stdout) =>
          resolve({ code: err && typeof err.code === 'number' ? err.code : err ? 1 : 0, stdout }),
      );
    });
    expect(run.code).toBe(EXIT.badInput);
    const { error } = JSON.parse(run.stdout) as { error: { code: string; message: string; field: string } };
    expect(error.code).toBe('file_too_large');
    expect(error.field).toBe('snapshot');
    expect(error.message).toContain(`--snapshot: snapshot file ${big} is ${FILE_LIMITS.snapshot + 1} bytes`);
  }, 120_000);
});

describe('API bodies', () => {
  const prefix = uniquePrefix('limits');
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness(redisUrl(), prefix);
  }, 60_000);

  afterAll(async () => {
    await h.stop();
    const redis = connectRedis();
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  it('api.bodyLimitBytes itself is capped at 16 MiB', async () => {
    const cfg = await configFile('body.yaml', {
      api: {
        tokens: [{ name: 'ops', role: 'admin', value: TOKEN }],
        bodyLimitBytes: MAX_API_BODY_LIMIT_BYTES + 1,
      },
    });
    const err = await loadConfig(cfg, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues.map((i) => i.path)).toEqual(['api.bodyLimitBytes']);
  });

  it('every route that takes a body answers 413 body_too_large over the limit, and nothing changes', async () => {
    const limit = h.loaded.config.api.bodyLimitBytes;
    const app = buildApi({
      ops: h.running.service,
      tokens: h.loaded.tokens,
      metrics: h.running.metrics,
      bodyLimitBytes: limit,
      metricsAuth: false,
    });
    await app.ready();
    try {
      const changing = routesOf(app).filter((r) => !['GET', 'HEAD', 'OPTIONS'].includes(r.method));
      expect(changing.length).toBeGreaterThanOrEqual(6);
      const before = (await h.running.service.listPlans({})).length;
      for (const route of changing) {
        const url = route.url.replace(/:[a-zA-Z]+/g, 'x');
        const res = await app.inject({
          method: route.method as 'POST',
          url,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          payload: JSON.stringify({ note: 'n'.repeat(limit) }),
        });
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(413);
        expect(res.json()).toMatchObject({ error: { code: 'body_too_large', field: 'body' } });
      }
      expect((await h.running.service.listPlans({})).length).toBe(before);
    } finally {
      await app.close();
    }
  });
});
