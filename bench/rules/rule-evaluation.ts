// Rule evaluation: drover's compiled rules against json-rules-engine on the same VMs (identical answers
// required), in VM evaluations per second.
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePolicy } from '../../src/domain/policy.js';
import type { Host } from '../../src/domain/snapshot.js';
import { compileRules } from '../../src/planner/rules/compile-rules.js';
import { referenceEngine } from '../../test/planner/support/reference-engine.js';
import { BENCH_RULES, generateCluster } from '../../test/planner/support/generate-cluster.js';

const here = dirname(fileURLToPath(import.meta.url));

export async function main(): Promise<void> {
  const machine = {
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadavg1m: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    node: process.version,
  };
  const date = new Date().toISOString();
  console.log(
    `rules bench — ${date} — ${machine.nproc} x ${machine.cpuModel}, ${machine.memGiB} GiB, load ${machine.loadavg1m}`,
  );
  const snap = generateCluster({ hosts: 10000, vms: 100000, seed: 5 });
  const hosts = new Map(snap.hosts.map((h) => [h.id, h]));
  const policy = parsePolicy({ rules: BENCH_RULES });
  const hostOf = (id: string) => hosts.get(id) as Host;

  // Compiled: every VM, several passes; report the median pass.
  const compiled = compileRules(policy.rules);
  const passes: number[] = [];
  let fired = 0;
  for (let p = 0; p < 5; p += 1) {
    const t0 = performance.now();
    fired = 0;
    for (const vm of snap.vms) fired += compiled.fired(vm, hostOf(vm.host)).length;
    passes.push(performance.now() - t0);
  }
  passes.sort((a, b) => a - b);
  const compiledMs = passes[2] ?? 0;
  const compiledPerS = snap.vms.length / (compiledMs / 1000);

  // Reference: json-rules-engine on a sample (it is slow), answers compared VM by VM.
  const reference = referenceEngine(policy.rules);
  const sample = snap.vms.slice(0, 10000);
  let mismatches = 0;
  const t0 = performance.now();
  const answers: number[][] = [];
  for (const vm of sample) answers.push(await reference.fired(vm, hostOf(vm.host)));
  const refMs = performance.now() - t0;
  sample.forEach((vm, i) => {
    const mine = [...compiled.fired(vm, hostOf(vm.host))].sort((a, b) => a - b);
    if (JSON.stringify(mine) !== JSON.stringify(answers[i])) mismatches += 1;
  });
  const refPerS = sample.length / (refMs / 1000);
  const speedup = compiledPerS / refPerS;
  const rows = [
    [
      'json-rules-engine 7.3.1',
      String(sample.length),
      refMs.toFixed(0),
      Math.round(refPerS).toString(),
      '1.0',
    ],
    [
      'drover compiled',
      String(snap.vms.length),
      compiledMs.toFixed(0),
      Math.round(compiledPerS).toString(),
      speedup.toFixed(1),
    ],
  ];
  const head = ['evaluator', 'VMs', 'ms', 'VMs/s', 'x'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => c.padEnd(w[i] ?? 0)).join(' | '));
  console.log(
    `${policy.rules.length} rules; ${fired} events on 100,000 VMs; mismatches on the ${sample.length}-VM sample: ${mismatches}`,
  );
  const goals = {
    speedupOverJsonRulesEngine: { value: Math.round(speedup * 10) / 10, goal: '>= 20', met: speedup >= 20 },
    identicalResults: { value: mismatches === 0, goal: 'true', met: mismatches === 0 },
    hundredThousandVmsMs: { value: Math.round(compiledMs), goal: 'well under 1000', met: compiledMs < 500 },
  };
  for (const [k, g] of Object.entries(goals))
    console.log(`goal ${k}: ${String(g.value)} (${g.goal}) ${g.met ? 'MET' : 'MISSED'}`);
  mkdirSync(join(here, '..', 'results'), { recursive: true });
  writeFileSync(
    join(here, '..', 'results', 'rules.json'),
    `${JSON.stringify({ bench: 'rules', date, machine, rules: policy.rules.length, vms: snap.vms.length, compiledMs, compiledPerS, referenceSample: sample.length, referenceMs: refMs, referencePerS: refPerS, speedup, mismatches, goals }, null, 2)}\n`,
  );
}
