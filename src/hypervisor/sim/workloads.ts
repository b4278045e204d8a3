// Workload processes of simulated VMs: how much CPU a VM wants and how fast it dirties memory, as functions
// of clock time. They are pure functions of time (no timers), so an idle cluster of 150,000 VMs costs
// nothing until someone samples it, and integrals over any interval are exact.
import { z } from 'zod';
import { nonNegativeNumber, percent, positiveNumber } from '../../domain/validation.js';
import type { Prng } from './prng.js';
import { loadTrace } from './traces.js';

export const ConstantWorkloadSchema = z.strictObject({
  kind: z.literal('constant'),
  cpuPct: percent(),
  dirtyMiBps: nonNegativeNumber(),
  /** Writable working set: the most memory that can be dirty at once (capped at the VM's memory). */
  wwsMiB: nonNegativeNumber(),
});

/** A steady level with periodic spikes, like a JVM whose garbage collector sweeps the heap. */
export const BurstyWorkloadSchema = z.strictObject({
  kind: z.literal('bursty'),
  cpuPct: percent(),
  dirtyMiBps: nonNegativeNumber(),
  burstCpuPct: percent(),
  burstDirtyMiBps: nonNegativeNumber(),
  periodS: positiveNumber(),
  burstS: positiveNumber(),
  /** Offset of the first burst from the simulation start. */
  phaseS: nonNegativeNumber().default(0),
  wwsMiB: nonNegativeNumber(),
});

/**
 * CPU from a real trace (data/traces). The trace has no memory-write rate, so the dirty rate is derived
 * from CPU: a guest dirties memory while its vCPUs run, so
 *   dirtyMiBps = idleDirtyMiBps + (cpuPct / 100) * dirtyMiBpsAtFullCpu
 * i.e. linear in CPU busy share, with a floor for the background writes of an idle guest (timers, logs).
 */
export const TraceWorkloadSchema = z.strictObject({
  kind: z.literal('trace'),
  /** A built-in trace name (`bitbrains-vm1`, `bitbrains-vm2`) or an absolute path to a CSV in that format. */
  trace: z.string().min(1),
  /** Seconds each trace sample lasts in simulated time (default: the trace's own 300 s). */
  stepS: positiveNumber().optional(),
  /** Trace sample the simulation starts at (so VMs on the same trace are not in lock-step). */
  offsetSteps: z.number().int().min(0).default(0),
  idleDirtyMiBps: nonNegativeNumber().default(1),
  dirtyMiBpsAtFullCpu: nonNegativeNumber(),
  wwsMiB: nonNegativeNumber(),
});

export const WorkloadSpecSchema = z.discriminatedUnion('kind', [
  ConstantWorkloadSchema,
  BurstyWorkloadSchema,
  TraceWorkloadSchema,
]);

export type WorkloadSpec = z.input<typeof WorkloadSpecSchema>;
type ParsedWorkload = z.output<typeof WorkloadSpecSchema>;

/** A VM's demand as a function of absolute clock time (ms). */
export interface WorkloadProcess {
  readonly wwsMiB: number;
  /** CPU demand, percent of the VM's own vCPUs. */
  cpuPctAt(tMs: number): number;
  /** Integral of cpuPct over [t0, t1] (percent x ms). */
  cpuPctIntegral(t0Ms: number, t1Ms: number): number;
  dirtyMiBpsAt(tMs: number): number;
  /** MiB written over [t0, t1] (before any working-set cap). */
  dirtiedMiB(t0Ms: number, t1Ms: number): number;
  /** The first time after `tMs` at which the rates change (Infinity for a constant process). */
  nextChangeAfter(tMs: number): number;
}

class ConstantProcess implements WorkloadProcess {
  constructor(
    private readonly cpuPct: number,
    private readonly dirtyMiBps: number,
    readonly wwsMiB: number,
  ) {}
  cpuPctAt(): number {
    return this.cpuPct;
  }
  cpuPctIntegral(t0: number, t1: number): number {
    return this.cpuPct * (t1 - t0);
  }
  dirtyMiBpsAt(): number {
    return this.dirtyMiBps;
  }
  dirtiedMiB(t0: number, t1: number): number {
    return (this.dirtyMiBps * (t1 - t0)) / 1000;
  }
  nextChangeAfter(): number {
    return Infinity;
  }
}

/** Two-level periodic step function: `high` for `highMs` at the start of each period, else `low`. */
class PeriodicStep {
  constructor(
    private readonly originMs: number,
    private readonly periodMs: number,
    private readonly highMs: number,
    private readonly low: number,
    private readonly high: number,
  ) {}
  at(t: number): number {
    const u = t - this.originMs;
    const rem = u - Math.floor(u / this.periodMs) * this.periodMs;
    return rem < this.highMs ? this.high : this.low;
  }
  /** Antiderivative (value x ms) relative to the origin. */
  private cumulative(t: number): number {
    const u = t - this.originMs;
    const k = Math.floor(u / this.periodMs);
    const rem = u - k * this.periodMs;
    const perPeriod = this.highMs * this.high + (this.periodMs - this.highMs) * this.low;
    return k * perPeriod + Math.min(rem, this.highMs) * this.high + Math.max(0, rem - this.highMs) * this.low;
  }
  integral(t0: number, t1: number): number {
    return this.cumulative(t1) - this.cumulative(t0);
  }
  nextChangeAfter(t: number): number {
    const u = t - this.originMs;
    const k = Math.floor(u / this.periodMs);
    const rem = u - k * this.periodMs;
    const base = this.originMs + k * this.periodMs;
    return rem < this.highMs ? base + this.highMs : base + this.periodMs;
  }
}

class BurstyProcess implements WorkloadProcess {
  private readonly cpu: PeriodicStep;
  private readonly dirty: PeriodicStep;
  constructor(
    spec: Extract<ParsedWorkload, { kind: 'bursty' }>,
    originMs: number,
    readonly wwsMiB: number,
  ) {
    const periodMs = spec.periodS * 1000;
    const burstMs = Math.min(spec.burstS * 1000, periodMs);
    const start = originMs + spec.phaseS * 1000;
    this.cpu = new PeriodicStep(start, periodMs, burstMs, spec.cpuPct, spec.burstCpuPct);
    this.dirty = new PeriodicStep(start, periodMs, burstMs, spec.dirtyMiBps, spec.burstDirtyMiBps);
  }
  cpuPctAt(t: number): number {
    return this.cpu.at(t);
  }
  cpuPctIntegral(t0: number, t1: number): number {
    return this.cpu.integral(t0, t1);
  }
  dirtyMiBpsAt(t: number): number {
    return this.dirty.at(t);
  }
  dirtiedMiB(t0: number, t1: number): number {
    return this.dirty.integral(t0, t1) / 1000;
  }
  nextChangeAfter(t: number): number {
    return this.dirty.nextChangeAfter(t);
  }
}

class TraceProcess implements WorkloadProcess {
  private readonly values: Float64Array;
  /** prefix[i] = sum of values[0..i-1] */
  private readonly prefix: Float64Array;
  private readonly stepMs: number;
  private readonly startMs: number;
  private readonly idleDirty: number;
  private readonly fullDirty: number;

  constructor(
    spec: Extract<ParsedWorkload, { kind: 'trace' }>,
    originMs: number,
    readonly wwsMiB: number,
  ) {
    const trace = loadTrace(spec.trace);
    this.values = trace.cpuPct;
    this.prefix = new Float64Array(this.values.length + 1);
    for (let i = 0; i < this.values.length; i++) {
      this.prefix[i + 1] = (this.prefix[i] ?? 0) + (this.values[i] ?? 0);
    }
    this.stepMs = (spec.stepS ?? trace.sampleS) * 1000;
    this.startMs = originMs - spec.offsetSteps * this.stepMs;
    this.idleDirty = spec.idleDirtyMiBps;
    this.fullDirty = spec.dirtyMiBpsAtFullCpu;
  }

  private index(t: number): { step: number; frac: number } {
    const x = (t - this.startMs) / this.stepMs;
    const step = Math.floor(x);
    return { step, frac: x - step };
  }
  private valueAtStep(step: number): number {
    const n = this.values.length;
    return this.values[((step % n) + n) % n] ?? 0;
  }
  private cumulative(t: number): number {
    const n = this.values.length;
    const { step, frac } = this.index(t);
    const cycles = Math.floor(step / n);
    const i = step - cycles * n;
    const total = this.prefix[n] ?? 0;
    return (cycles * total + (this.prefix[i] ?? 0) + frac * this.valueAtStep(step)) * this.stepMs;
  }
  cpuPctAt(t: number): number {
    return this.valueAtStep(this.index(t).step);
  }
  cpuPctIntegral(t0: number, t1: number): number {
    return this.cumulative(t1) - this.cumulative(t0);
  }
  dirtyMiBpsAt(t: number): number {
    return this.idleDirty + (this.cpuPctAt(t) / 100) * this.fullDirty;
  }
  dirtiedMiB(t0: number, t1: number): number {
    const cpu = this.cpuPctIntegral(t0, t1);
    return (this.idleDirty * (t1 - t0) + (cpu / 100) * this.fullDirty) / 1000;
  }
  nextChangeAfter(t: number): number {
    return this.startMs + (this.index(t).step + 1) * this.stepMs;
  }
}

/** Builds the process of a validated spec; `originMs` is the simulation start, `memMiB` caps the working set. */
export function createWorkload(spec: ParsedWorkload, originMs: number, memMiB: number): WorkloadProcess {
  const wwsMiB = Math.min(spec.wwsMiB, memMiB);
  switch (spec.kind) {
    case 'constant':
      return new ConstantProcess(spec.cpuPct, spec.dirtyMiBps, wwsMiB);
    case 'bursty':
      return new BurstyProcess(spec, originMs, wwsMiB);
    case 'trace':
      return new TraceProcess(spec, originMs, wwsMiB);
  }
}

export const WORKLOAD_PRESET_NAMES = ['idle', 'web', 'database', 'jvm'] as const;
export type WorkloadPresetName = (typeof WORKLOAD_PRESET_NAMES)[number];

/** Draws from `rng` when given; without one, the middle of each range (deterministic). */
function draw(rng: Prng | undefined, min: number, max: number): number {
  return rng ? rng.uniform(min, max) : (min + max) / 2;
}

/**
 * Ready-made workloads. Dirty rates: idle ~1 MiB/s, web ~50 MiB/s, database 100–500 MiB/s,
 * jvm 500–1,000 MiB/s with garbage-collection bursts to 1,200–1,500 MiB/s every 20–60 s.
 */
export const WORKLOAD_PRESETS: Readonly<Record<WorkloadPresetName, (rng?: Prng) => WorkloadSpec>> = {
  idle: (rng) => ({
    kind: 'constant',
    cpuPct: draw(rng, 1, 3),
    dirtyMiBps: draw(rng, 0.5, 1.5),
    wwsMiB: 256,
  }),
  web: (rng) => ({
    kind: 'constant',
    cpuPct: draw(rng, 15, 45),
    dirtyMiBps: draw(rng, 40, 60),
    wwsMiB: 1024,
  }),
  database: (rng) => ({
    kind: 'constant',
    cpuPct: draw(rng, 30, 70),
    dirtyMiBps: draw(rng, 100, 500),
    wwsMiB: 4096,
  }),
  jvm: (rng) => {
    const periodS = draw(rng, 20, 60);
    return {
      kind: 'bursty',
      cpuPct: draw(rng, 30, 60),
      dirtyMiBps: draw(rng, 500, 1000),
      burstCpuPct: draw(rng, 80, 100),
      burstDirtyMiBps: draw(rng, 1200, 1500),
      periodS,
      burstS: draw(rng, 2, 5),
      phaseS: draw(rng, 0, periodS),
      wwsMiB: 6144,
    };
  },
};

export function presetWorkload(name: WorkloadPresetName, rng?: Prng): WorkloadSpec {
  return WORKLOAD_PRESETS[name](rng);
}
