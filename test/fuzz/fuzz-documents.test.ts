// Fuzzing of drover's document parsers: service config (object and YAML text), policy (object and YAML
// text), snapshot and plan. Every input must either parse or be refused with a DroverError carrying a
// stable code and issues that name their field; nothing else may escape, and no case may take long.
// Oversized files are refused before they are read, and YAML resource-exhaustion tricks are refused.
import { mkdtemp, rm, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DroverError, ValidationError, isDroverErrorCode } from '../../src/domain/errors.js';
import { parsePlan } from '../../src/domain/plan.js';
import { parsePolicy } from '../../src/domain/policy.js';
import { parseSnapshot } from '../../src/domain/snapshot.js';
import { loadPolicy, parsePolicyText, MAX_POLICY_FILE_BYTES } from '../../src/planner/load-policy.js';
import {
  ConfigError,
  loadConfig,
  MAX_CONFIG_FILE_BYTES,
  parseConfig,
  parseYaml,
} from '../../src/service/config.js';
import { classify, classifyAsync, mutated, mutatedText, printSummary, runs, tally } from './fuzz-support.js';

function isTypedInputError(err: unknown): boolean {
  if (!(err instanceof DroverError) || !isDroverErrorCode(err.code)) return false;
  if (err instanceof ValidationError) {
    // Every issue carries a message; the message of the error lists them all.
    return (
      err.issues.length > 0 && err.issues.every((i) => typeof i.message === 'string' && i.message !== '')
    );
  }
  return true;
}

const MAX_CASE_MS = 2_000;

// Candidate valid configs: the schema is still growing, so the first one the current schema accepts is used.
const CONFIG_SEEDS: unknown[] = [
  {
    hypervisor: { kind: 'sim', generate: { hosts: 4, vmsPerHost: [1, 3] }, seed: 7 },
    policy: { file: 'policy.yaml' },
    schedules: { rebalance: { cron: '*/5 * * * *' } },
    api: { port: 0, tokens: [{ name: 'ops', role: 'admin', value: '0123456789abcdef0123' }] },
  },
  {
    hypervisor: { kind: 'sim' },
    policy: { file: 'policy.yaml' },
    api: { port: 0, tokens: [{ name: 'ops', role: 'admin', value: '0123456789abcdef0123' }] },
  },
  {
    hypervisor: { kind: 'libvirt', hosts: [{ id: 'kvm-01', uri: 'qemu+tcp://kvm-01/system' }] },
    policy: { file: 'policy.yaml' },
  },
];

const POLICY_SEED = {
  version: 1,
  balance: { targetCpuSpreadPct: 15, holdTimeS: 600 },
  hosts: { cpuCeilingPct: 80, memReserveMiB: 2048 },
  limits: { maxMovesPerRun: 10, perHostConcurrency: 2, perClusterConcurrency: 6 },
  vms: { cooldownS: 1800 },
  migration: { allowAutoConverge: true },
  watchdog: { profile: 'nova', nova: { maxDowntimeMs: 400 } },
  rules: [
    {
      name: 'no-db',
      priority: 5,
      conditions: {
        all: [
          { fact: 'vm.labels.app', operator: 'equal', value: 'db' },
          { not: { fact: 'vm.dirtyMiBps', operator: 'lessThan', value: 50 } },
        ],
      },
      event: { type: 'exclude', params: { reason: 'databases stay' } },
    },
    {
      name: 'rack-spread',
      conditions: { any: [{ fact: 'host.labels.rack', operator: 'in', value: ['r1', 'r2'] }] },
      event: { type: 'antiAffinity', params: { byLabel: 'app' } },
    },
  ],
};

const POLICY_YAML = `version: 1
balance:
  targetCpuSpreadPct: 15
limits: { maxMovesPerRun: 10, perHostConcurrency: 2 }
watchdog:
  profile: kubevirt
rules:
  - name: no-db
    conditions:
      all:
        - { fact: vm.labels.app, operator: equal, value: db }
    event: { type: exclude }
`;

const SNAPSHOT_SEED = {
  version: 1,
  takenAt: '2026-11-25T12:00:00Z',
  hosts: [
    { id: 'kvm-01', cpus: 32, memMiB: 262144, state: 'active', cpuPct: 71.5, memUsedMiB: 190000 },
    {
      id: 'kvm-02',
      cpus: 32,
      memMiB: 262144,
      state: 'maintenance',
      cpuPct: null,
      memUsedMiB: null,
      bandwidthMiBps: 1150,
      labels: { rack: 'r1' },
    },
  ],
  vms: [
    {
      id: '0b1c0000-0000-0000-0000-000000000001',
      name: 'db-7',
      host: 'kvm-01',
      state: 'running',
      vcpus: 8,
      memMiB: 16384,
      cpuPct: 40,
      memUsedMiB: 12000,
      dirtyMiBps: 35.2,
      storage: 'shared',
      labels: { app: 'db' },
    },
    {
      id: '0b1c0000-0000-0000-0000-000000000002',
      name: 'web-1',
      host: 'kvm-02',
      state: 'paused',
      vcpus: 2,
      memMiB: 4096,
      cpuPct: null,
      memUsedMiB: null,
      dirtyMiBps: null,
      storage: 'local',
      diskMiB: 20480,
    },
  ],
};

const PLAN_SEED = {
  id: 'plan-1',
  reason: 'rebalance',
  createdAt: '2026-11-25T12:00:00Z',
  steps: [
    {
      vm: '0b1c0000-0000-0000-0000-000000000001',
      from: 'kvm-01',
      to: 'kvm-02',
      kind: 'live',
      why: 'kvm-01 cpu 91% > 80%',
      predicted: { converges: true, durationS: 21.4, downtimeMs: 180, transferMiB: 19500 },
      downtimeBudgetMs: 300,
    },
  ],
  skipped: [{ vm: 'x', why: 'dirty rate too high' }],
  before: { cpuSpreadPct: 38, memSpreadPct: 22.1 },
  after: { cpuSpreadPct: 9.6, memSpreadPct: 11 },
};

function validConfigSeed(): unknown {
  for (const seed of CONFIG_SEEDS) {
    try {
      parseConfig(seed);
      return seed;
    } catch {
      // try the next shape
    }
  }
  throw new Error('none of the fuzz seed configs is valid under the current schema');
}

const anyInput = fc.oneof(fc.anything({ maxDepth: 4 }), fc.jsonValue({ maxDepth: 5 }));

/** A YAML document rendered from a (mutated) object, or raw text near a valid one. */
function yamlOf(value: unknown): string {
  return JSON.stringify(value, null, 1) ?? 'null';
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-fuzz-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  const { crashed } = printSummary('documents');
  expect(crashed).toBe(0);
});

describe('config parser', () => {
  it('accepts or refuses with ConfigError any config object', () => {
    const t = tally('config object');
    const seed = validConfigSeed();
    fc.assert(
      fc.property(fc.oneof(anyInput, mutated(seed, 4)), (input) => {
        classify(t, () => parseConfig(input), isTypedInputError);
      }),
      { numRuns: runs(1500) },
    );
    expect(t.refused).toBeGreaterThan(0);
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });

  it('accepts or refuses with ConfigError any YAML text', () => {
    const t = tally('config YAML text');
    const seedText = yamlOf(validConfigSeed());
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.string({ unit: 'binary', maxLength: 300 }),
          mutatedText(seedText),
        ),
        (text) => {
          classify(
            t,
            () => parseConfig(parseYaml(text, 'fuzz.yaml'), 'fuzz.yaml'),
            (err) => {
              return err instanceof ConfigError && isTypedInputError(err);
            },
          );
        },
      ),
      { numRuns: runs(800) },
    );
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });

  it('refuses YAML alias bombs and deeply nested documents with ConfigError', () => {
    const t = tally('config YAML hostile');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) {
      const prev = String.fromCharCode(96 + i);
      bomb.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${prev}`).join(', ')}]`,
      );
    }
    const hostile = [
      bomb.join('\n'),
      `hypervisor: ${'['.repeat(20_000)}${']'.repeat(20_000)}`,
      `hypervisor: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}`,
      `a: !!binary ${'A'.repeat(100_000)}`,
      `a: !custom-tag x`,
      '\u0000\uffff\ud800',
    ];
    for (const text of hostile) {
      const outcome = classify(
        t,
        () => parseConfig(parseYaml(text, 'hostile.yaml'), 'hostile.yaml'),
        (err) => err instanceof ConfigError && isTypedInputError(err),
      );
      expect(outcome).toBe('refused');
    }
    expect(t.slowestMs).toBeLessThan(10_000);
  });

  it('refuses a config file over the size limit before reading it', async () => {
    const t = tally('config file size');
    const path = join(dir, 'huge.yaml');
    await writeFile(path, '# drover\n');
    await truncate(path, MAX_CONFIG_FILE_BYTES + 1);
    const outcome = await classifyAsync(
      t,
      () => loadConfig(path, {}),
      (err) => err instanceof ConfigError,
    );
    expect(outcome).toBe('refused');
    await expect(loadConfig(path, {})).rejects.toThrow(/limit/);
    // A file at exactly the limit is read (and refused for its content, not its size).
    await truncate(path, MAX_CONFIG_FILE_BYTES);
    await expect(loadConfig(path, {})).rejects.not.toThrow(/limit/);
  });
});

describe('policy parser', () => {
  it('accepts or refuses with ValidationError any policy object', () => {
    const t = tally('policy object');
    expect(() => parsePolicy(POLICY_SEED)).not.toThrow();
    fc.assert(
      fc.property(fc.oneof(anyInput, mutated(POLICY_SEED, 4)), (input) => {
        classify(t, () => parsePolicy(input, 'fuzz'), isTypedInputError);
      }),
      { numRuns: runs(2000) },
    );
    expect(t.accepted).toBeGreaterThan(0);
    expect(t.refused).toBeGreaterThan(0);
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });

  it('accepts or refuses with ValidationError any policy YAML text', () => {
    const t = tally('policy YAML text');
    expect(() => parsePolicyText(POLICY_YAML, 'seed')).not.toThrow();
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 300 }), mutatedText(POLICY_YAML), mutated(POLICY_SEED).map(yamlOf)),
        (text) => {
          classify(t, () => parsePolicyText(text, 'fuzz.yaml'), isTypedInputError);
        },
      ),
      { numRuns: runs(1500) },
    );
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });

  it('refuses alias bombs, deep rule nesting and oversized files', async () => {
    const t = tally('policy hostile');
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 12; i++) {
      const prev = String.fromCharCode(96 + i);
      bomb.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${prev}`).join(', ')}]`,
      );
    }
    const leaf = '{"fact":"vm.id","operator":"equal","value":"x"}';
    const deepRule = (n: number) =>
      `rules:\n  - name: r\n    event: {type: exclude}\n    conditions: ${'{"not": '.repeat(n)}${leaf}${'}'.repeat(n)}`;
    for (const text of [bomb.join('\n'), deepRule(3_000), `rules: ${'['.repeat(20_000)}`]) {
      expect(classify(t, () => parsePolicyText(text, 'hostile.yaml'), isTypedInputError)).toBe('refused');
    }
    // A deep rule as an object (no YAML): the recursive condition schema must not blow the stack uncaught.
    let condition: unknown = JSON.parse(leaf);
    for (let i = 0; i < 20_000; i++) condition = { not: condition };
    classify(
      t,
      () =>
        parsePolicy({ rules: [{ name: 'r', event: { type: 'exclude' }, conditions: { not: condition } }] }),
      isTypedInputError,
    );

    const path = join(dir, 'huge-policy.yaml');
    await writeFile(path, '# policy\n');
    await truncate(path, MAX_POLICY_FILE_BYTES + 1);
    const outcome = await classifyAsync(t, () => loadPolicy(path), isTypedInputError);
    expect(outcome).toBe('refused');
    await expect(loadPolicy(path)).rejects.toMatchObject({ code: 'policy_too_large' });
  });
});

describe('snapshot and plan parsers', () => {
  it('accepts or refuses with ValidationError any snapshot', () => {
    const t = tally('snapshot');
    expect(() => parseSnapshot(SNAPSHOT_SEED)).not.toThrow();
    fc.assert(
      fc.property(fc.oneof(anyInput, mutated(SNAPSHOT_SEED, 3)), (input) => {
        classify(t, () => parseSnapshot(input, 'fuzz'), isTypedInputError);
      }),
      { numRuns: runs(2500) },
    );
    expect(t.accepted).toBeGreaterThan(0);
    expect(t.refused).toBeGreaterThan(0);
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });

  it('accepts or refuses any snapshot JSON text, and a 10,000-host snapshot parses in bounded time', () => {
    const t = tally('snapshot JSON text');
    const seedText = JSON.stringify(SNAPSHOT_SEED);
    const parseText = (text: string) => {
      let data: unknown;
      try {
        data = JSON.parse(text);
      } catch (err) {
        throw new DroverError('snapshot_unreadable', 'not JSON', { cause: err });
      }
      return parseSnapshot(data, 'fuzz.json');
    };
    fc.assert(
      fc.property(fc.oneof(mutatedText(seedText), fc.string({ maxLength: 200 })), (text) => {
        classify(t, () => parseText(text), isTypedInputError);
      }),
      { numRuns: runs(1000) },
    );
    const big = {
      ...SNAPSHOT_SEED,
      hosts: Array.from({ length: 10_000 }, (_, i) => ({ ...SNAPSHOT_SEED.hosts[0], id: `h${i}` })),
      vms: [],
    };
    expect(classify(t, () => parseSnapshot(big), isTypedInputError)).toBe('accepted');
    // 10,000 hosts with one bad field each: refused, every issue listed with its path.
    const bad = { ...big, hosts: big.hosts.map((h) => ({ ...h, cpus: -1 })) };
    try {
      parseSnapshot(bad);
      expect.unreachable('a snapshot of negative CPU counts must be refused');
    } catch (err) {
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).issues).toHaveLength(10_000);
      expect((err as ValidationError).issues[9_999]?.path).toBe('hosts[9999].cpus');
    }
    expect(t.slowestMs).toBeLessThan(10_000);
  });

  it('accepts or refuses with ValidationError any plan', () => {
    const t = tally('plan');
    expect(() => parsePlan(PLAN_SEED)).not.toThrow();
    fc.assert(
      fc.property(fc.oneof(anyInput, mutated(PLAN_SEED, 3)), (input) => {
        classify(t, () => parsePlan(input, 'fuzz'), isTypedInputError);
      }),
      { numRuns: runs(2000) },
    );
    expect(t.accepted).toBeGreaterThan(0);
    expect(t.refused).toBeGreaterThan(0);
    expect(t.slowestMs).toBeLessThan(MAX_CASE_MS);
  });
});
