import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors.js';
import { parsePolicy } from '../../src/domain/policy.js';
import { loadPolicy, parsePolicyText } from '../../src/planner/load-policy.js';

const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error('expected a validation error');
};

describe('policy validation', () => {
  it('names the file and the field path, with what was expected and what came', () => {
    expect(messageOf(() => parsePolicyText('limits:\n  maxMovesPerRun: -3\n', 'policies/x.yaml'))).toBe(
      'policies/x.yaml: limits.maxMovesPerRun: expected a positive integer, got -3',
    );
  });

  it('reports every issue at once, including unknown keys and bad rules', () => {
    const msg = messageOf(() =>
      parsePolicy(
        {
          watchdog: { profile: 'fast' },
          hosts: { memCeilingPct: 120, bogus: 1 },
          rules: [
            {
              name: 'a',
              conditions: { all: [{ fact: 'vm.colour', operator: 'equal', value: 1 }] },
              event: { type: 'pin' },
            },
            {
              name: 'b',
              conditions: { all: [{ fact: 'vm.memMiB', operator: 'in', value: 5 }] },
              event: { type: 'downtimeBudget', params: { ms: 0 } },
            },
            { name: 'a', conditions: { any: [] }, event: { type: 'antiAffinity', params: {} } },
          ],
        },
        'p.yaml',
      ),
    );
    expect(msg).toContain(
      'p.yaml: watchdog.profile: expected one of predictive | nova | kubevirt, got "fast"',
    );
    expect(msg).toContain('p.yaml: hosts.memCeilingPct: expected a percentage from 0 to 100, got 120');
    expect(msg).toContain('p.yaml: hosts.bogus: unknown field');
    expect(msg).toMatch(/p\.yaml: rules\[0\]\.conditions\.all\[0\]\.fact: expected one of .*got "vm.colour"/);
    expect(msg).toContain('p.yaml: rules[1].conditions.all[0].value: expected a list for operator in, got 5');
    expect(msg).toContain('p.yaml: rules[1].event.params.ms: expected a positive number, got 0');
    expect(msg).toContain('p.yaml: rules[2].event.params: expected exactly one of group or byLabel');
  });

  it('names the known key a misspelt one was probably meant to be, at any depth', () => {
    const msg = messageOf(() =>
      parsePolicy(
        {
          limits: { maxMovePerRun: 3 },
          Balance: {},
          watchdog: { nova: { maxDowntimeMS: 5 } },
          rules: [
            {
              name: 'a',
              conditions: { all: [{ fact: 'vm.id', operator: 'equal', value: 'x', priorty: 2 }] },
              event: { type: 'pin', parms: {} },
            },
          ],
          colour: 'blue',
        },
        'p.yaml',
      ),
    );
    expect(msg.split('\n').sort()).toEqual([
      'p.yaml: Balance: unknown field; did you mean `balance`?',
      'p.yaml: colour: unknown field',
      'p.yaml: limits.maxMovePerRun: unknown field; did you mean `maxMovesPerRun`?',
      'p.yaml: rules[0].conditions.all[0].priorty: unknown field; did you mean `priority`?',
      'p.yaml: rules[0].event.parms: unknown field; did you mean `params`?',
      'p.yaml: watchdog.nova.maxDowntimeMS: unknown field; did you mean `maxDowntimeMs`?',
    ]);
  });

  it('reports duplicate rule names', () => {
    const rule = { name: 'same', conditions: { all: [] }, event: { type: 'exclude' } };
    expect(messageOf(() => parsePolicy({ rules: [rule, rule] }, 'p.yaml'))).toBe(
      'p.yaml: rules[1].name: duplicate rule name "same" (rules[0])',
    );
  });

  it('reports YAML syntax errors with their line and column', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'drover-policy-'));
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'balance:\n  targetCpuSpreadPct: 10\n limits: [\n');
    await expect(loadPolicy(file)).rejects.toThrow(
      new RegExp(`^${file}: line 3, column \\d+: YAML syntax error`),
    );
  });

  it('fills every default from an empty file', () => {
    const p = parsePolicyText('', 'empty.yaml');
    expect(p.limits.maxMovesPerRun).toBe(20);
    expect(p.watchdog.profile).toBe('predictive');
    expect(p.rules).toEqual([]);
  });
});
