// CPU model compatibility (src/domain/cpu-models.ts): named models run on their own model and later ones of the same line only.
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Host, Snapshot, Vm } from '../../src/domain/snapshot.js';
import { canHostCpuModel, cpuModelsRunnableOn } from '../../src/domain/cpu-models.js';
import { planDrain } from '../../src/planner/make-plan.js';

const NOW = Date.parse('2026-11-26T00:00:00Z');

describe('canHostCpuModel', () => {
  it.each([
    ['Cascadelake-Server', 'Cascadelake-Server', true],
    ['Cascadelake-Server', 'Haswell', true],
    ['Cascadelake-Server', 'Nehalem', true],
    ['Haswell', 'Cascadelake-Server', false],
    ['Broadwell', 'Haswell-noTSX', true],
    ['Haswell-noTSX', 'Haswell', false],
    ['Skylake-Server-noTSX-IBRS', 'Haswell-noTSX', true],
    ['Skylake-Server-noTSX', 'Haswell-noTSX', false],
    ['EPYC-Rome', 'EPYC', true],
    ['EPYC', 'EPYC-Rome', false],
    ['EPYC-Rome', 'Haswell', false],
    ['Cascadelake-Server', 'EPYC', false],
    ['Icelake-Server', 'Cascadelake-Server', true],
    ['Cascadelake-Server', 'Icelake-Server', false],
    ['Icelake-Server', 'Icelake-Server-noTSX', true],
    ['Cascadelake-Server', 'Cascadelake-Server-noTSX', false],
    ['Opteron_G4', 'Opteron_G3', false],
    ['Opteron_G5', 'Opteron_G4', true],
    ['EPYC', 'Opteron_G5', false],
    ['EPYC-Milan', 'EPYC', true],
    ['my-custom-model', 'my-custom-model', true],
    ['my-custom-model', 'Nehalem', false],
  ])('host %s, guest %s: %s', (host, guest, ok) => {
    expect(canHostCpuModel(host, guest)).toBe(ok);
  });
});

describe("cpuModelsRunnableOn (the simulator's default for a host)", () => {
  it("lists exactly the guest models canHostCpuModel accepts, the host's own included", () => {
    expect(cpuModelsRunnableOn('Icelake-Server')).toContain('Cascadelake-Server');
    expect(cpuModelsRunnableOn('Cascadelake-Server')).not.toContain('Icelake-Server');
    expect(cpuModelsRunnableOn('Broadwell')).toEqual(
      expect.arrayContaining(['Conroe', 'Haswell', 'Broadwell', 'Haswell-noTSX', 'Broadwell-noTSX']),
    );
    expect(cpuModelsRunnableOn('my-custom-model')).toEqual(['my-custom-model']);
    for (const host of ['Icelake-Server', 'EPYC-Rome', 'Opteron_G5', 'Haswell-noTSX']) {
      for (const guest of cpuModelsRunnableOn(host)) expect(canHostCpuModel(host, guest)).toBe(true);
    }
  });
});

describe('CPU models in plans', () => {
  const host = (id: string, cpuModel: string): Host => ({
    id,
    cpus: 32,
    memMiB: 131072,
    state: id === 'old' ? 'maintenance' : 'active',
    cpuPct: 10,
    memUsedMiB: 8192,
    bandwidthMiBps: 1150,
    cpuModel,
  });
  const vm = (id: string, cpuModel: string | null): Vm => ({
    id,
    name: id,
    host: 'old',
    state: 'running',
    vcpus: 2,
    memMiB: 4096,
    cpuPct: 20,
    memUsedMiB: 2048,
    dirtyMiBps: 5,
    storage: 'shared',
    cpuModel,
  });
  const snap = (vms: Vm[]): Snapshot => ({
    version: 1,
    takenAt: '2026-11-26T00:00:00Z',
    hosts: [host('old', 'Haswell'), host('amd', 'EPYC-Rome'), host('new', 'Cascadelake-Server')],
    vms,
  });

  it('a guest with a named model goes to a later model of its line, never to another vendor', () => {
    const plan = planDrain(snap([vm('a', 'Haswell'), vm('b', 'IvyBridge')]), parsePolicy({}), ['old'], {
      now: NOW,
    });
    expect(plan.skipped).toEqual([]);
    expect(plan.steps.map((s) => [s.vm, s.to])).toEqual([
      ['a', 'new'],
      ['b', 'new'],
    ]);
  });

  it('a guest that sees its host CPU, or a model no host can run, cannot leave', () => {
    const plan = planDrain(snap([vm('c', null), vm('d', 'Icelake-Server')]), parsePolicy({}), ['old'], {
      now: NOW,
    });
    expect(plan.steps).toEqual([]);
    expect(plan.skipped.map((s) => s.vm).sort()).toEqual(['c', 'd']);
  });
});
