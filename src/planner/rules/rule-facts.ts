// The named facts rules are written over, read straight from a VM and its current host.
import type { Host, Vm } from '../../domain/snapshot.js';
import { RULE_FACTS } from '../../domain/policy.js';

export type FactValue = string | number | boolean | null | undefined | readonly string[];
export type FactReader = (vm: Vm, host: Host) => FactValue;

const READERS: Record<(typeof RULE_FACTS)[number], FactReader> = {
  'vm.id': (vm) => vm.id,
  'vm.name': (vm) => vm.name,
  'vm.state': (vm) => vm.state,
  'vm.vcpus': (vm) => vm.vcpus,
  'vm.memMiB': (vm) => vm.memMiB,
  'vm.memUsedMiB': (vm) => vm.memUsedMiB,
  'vm.cpuPct': (vm) => vm.cpuPct,
  'vm.dirtyMiBps': (vm) => vm.dirtyMiBps,
  'vm.dirtyPeakMiBps': (vm) => vm.dirtyPeakMiBps,
  'vm.storage': (vm) => vm.storage,
  'vm.diskMiB': (vm) => vm.diskMiB,
  'vm.cpuModel': (vm) => vm.cpuModel,
  'vm.labelKeys': (vm) => Object.keys(vm.labels ?? {}),
  'host.id': (_vm, h) => h.id,
  'host.state': (_vm, h) => h.state,
  'host.cpus': (_vm, h) => h.cpus,
  'host.memMiB': (_vm, h) => h.memMiB,
  'host.memUsedMiB': (_vm, h) => h.memUsedMiB,
  'host.memUsedPct': (_vm, h) => (h.memUsedMiB === null ? null : (h.memUsedMiB / h.memMiB) * 100),
  'host.cpuPct': (_vm, h) => h.cpuPct,
  'host.bandwidthMiBps': (_vm, h) => h.bandwidthMiBps,
  'host.cpuModel': (_vm, h) => h.cpuModel,
  'host.labelKeys': (_vm, h) => Object.keys(h.labels ?? {}),
};

/**
 * A label's value when the labels have it as their own property. Label values are strings and no object
 * prototype holds a string, so a string read needs no ownership test (the common case, and the fast one).
 */
function ownLabel(labels: Readonly<Record<string, string>> | null | undefined, key: string): FactValue {
  if (!labels) return undefined;
  const x = labels[key];
  if (typeof x === 'string') return x;
  return x !== undefined && Object.hasOwn(labels, key) ? x : undefined;
}

/** The reader for a fact name (validated by the policy schema); undefined for a name that is not a fact. */
export function factReader(name: string): FactReader | undefined {
  if (Object.hasOwn(READERS, name)) return READERS[name as keyof typeof READERS];
  if (name.startsWith('vm.labels.')) {
    const key = name.slice('vm.labels.'.length);
    return (vm) => ownLabel(vm.labels, key);
  }
  if (name.startsWith('host.labels.')) {
    const key = name.slice('host.labels.'.length);
    return (_vm, h) => ownLabel(h.labels, key);
  }
  return undefined;
}

/** Every fact of a VM as one object, the way json-rules-engine receives them (the reference path). */
export function factsOf(vm: Vm, host: Host): Record<string, FactValue> {
  const facts: Record<string, FactValue> = {};
  for (const name of RULE_FACTS) facts[name] = READERS[name](vm, host);
  for (const [k, v] of Object.entries(vm.labels ?? {})) facts[`vm.labels.${k}`] = v;
  for (const [k, v] of Object.entries(host.labels ?? {})) facts[`host.labels.${k}`] = v;
  return facts;
}
