// What the rules say about each VM: the fired events folded into one record per VM. On conflicting events
// the higher-priority rule wins; at equal priority the more cautious value (the smaller downtime budget).
import type { Rule } from '../../domain/policy.js';
import type { Host, Vm } from '../../domain/snapshot.js';
import { compileRules } from './compile-rules.js';

export interface HostSelector {
  hosts?: string[] | undefined;
  labels?: Record<string, string> | undefined;
}

export interface VmRuleEffects {
  /** Rule name (and its reason) that excludes the VM from any move. */
  excludedBy?: string;
  pinnedBy?: string;
  downtimeBudgetMs?: number;
  downtimeBudgetBy?: string;
  prefer: readonly HostSelector[];
  avoid: readonly HostSelector[];
  /** Group keys (unique across rules) the VM belongs to. */
  antiAffinity: readonly string[];
  affinity: readonly string[];
}

export function hostMatches(sel: HostSelector, host: Host): boolean {
  if (sel.hosts && !sel.hosts.includes(host.id)) return false;
  if (sel.labels) {
    for (const [k, v] of Object.entries(sel.labels)) if (host.labels?.[k] !== v) return false;
  }
  return true;
}

/** A VM's group key for a rule: built once per rule and label value (many VMs share each). */
function groupKey(
  rule: Rule,
  params: { group?: string | undefined; byLabel?: string | undefined },
  vm: Vm,
  cache: Map<Rule, Map<string, string>>,
): string | undefined {
  let perRule = cache.get(rule);
  if (!perRule) {
    perRule = new Map();
    cache.set(rule, perRule);
  }
  // A rule names either a fixed group or a label, so '' cannot collide within one rule's cache.
  const value =
    params.group !== undefined ? '' : params.byLabel !== undefined ? vm.labels?.[params.byLabel] : undefined;
  if (value === undefined) return undefined;
  let key = perRule.get(value);
  if (key === undefined) {
    key =
      params.group !== undefined ? `${rule.name}/${params.group}` : `${rule.name}/${params.byLabel}=${value}`;
    perRule.set(value, key);
  }
  return key;
}

/** Shared by every VM without such effects; never mutated (effects replace the array instead). */
const NONE: readonly never[] = Object.freeze([]);

/**
 * Evaluates the rules for every VM. Returns one entry per VM index (undefined when no rule fired), sparse
 * so a 100,000-VM cluster with few matches costs little. Records are frozen and shared between VMs whose
 * fired rules (and group key) are the same.
 */
export function evaluateRuleEffects(
  rules: readonly Rule[],
  vms: readonly Vm[],
  hostOf: (vm: Vm, index: number) => Host,
): (VmRuleEffects | undefined)[] {
  const out: (VmRuleEffects | undefined)[] = new Array<VmRuleEffects | undefined>(vms.length);
  if (rules.length === 0) return out;
  const compiled = compileRules(rules);
  const fired: number[] = [];
  // Group keys are the same few strings for many VMs: build each once.
  const keys = new Map<Rule, Map<string, string>>();
  // VMs with the same rules fired (and the same group key) share one frozen record.
  const internable = rules.length <= 30;
  const plain = new Map<number, VmRuleEffects>();
  const grouped = new Map<number, Map<string, VmRuleEffects>>();
  for (let v = 0; v < vms.length; v += 1) {
    const vm = vms[v];
    if (!vm) continue;
    const n = compiled.firedInto(vm, hostOf(vm, v), fired);
    if (n === 0) continue;
    const fx: VmRuleEffects = { prefer: NONE, avoid: NONE, antiAffinity: NONE, affinity: NONE };
    let budgetPriority = -1;
    let mask = 0;
    for (let k = 0; k < n; k += 1) {
      mask |= 1 << (fired[k] as number);
      const rule = rules[fired[k] as number];
      if (!rule) continue;
      const ev = rule.event;
      switch (ev.type) {
        case 'exclude':
          fx.excludedBy ??= ev.params?.reason ? `${rule.name} (${ev.params.reason})` : rule.name;
          break;
        case 'pin':
          fx.pinnedBy ??= ev.params?.reason ? `${rule.name} (${ev.params.reason})` : rule.name;
          break;
        case 'downtimeBudget':
          // `fired` is in priority order, so the first rule seen has the highest priority.
          if (
            budgetPriority < 0 ||
            (rule.priority === budgetPriority && ev.params.ms < (fx.downtimeBudgetMs ?? 0))
          ) {
            fx.downtimeBudgetMs = ev.params.ms;
            fx.downtimeBudgetBy = rule.name;
            budgetPriority = rule.priority;
          }
          break;
        case 'preferHosts':
          fx.prefer = [...fx.prefer, ev.params];
          break;
        case 'avoidHosts':
          fx.avoid = [...fx.avoid, ev.params];
          break;
        case 'antiAffinity': {
          const g = groupKey(rule, ev.params, vm, keys);
          if (g !== undefined) fx.antiAffinity = [...fx.antiAffinity, g];
          break;
        }
        case 'affinity': {
          const g = groupKey(rule, ev.params, vm, keys);
          if (g !== undefined) fx.affinity = [...fx.affinity, g];
          break;
        }
      }
    }
    out[v] = internable ? intern(fx, mask, plain, grouped) : fx;
  }
  return out;
}

function intern(
  fx: VmRuleEffects,
  mask: number,
  plain: Map<number, VmRuleEffects>,
  grouped: Map<number, Map<string, VmRuleEffects>>,
): VmRuleEffects {
  const groups = fx.antiAffinity.length + fx.affinity.length;
  if (groups === 0) {
    const known = plain.get(mask);
    if (known) return known;
    plain.set(mask, Object.freeze(fx));
    return fx;
  }
  if (groups > 1) return Object.freeze(fx);
  const key = fx.antiAffinity[0] ?? fx.affinity[0] ?? '';
  let byKey = grouped.get(mask);
  if (!byKey) {
    byKey = new Map();
    grouped.set(mask, byKey);
  }
  const known = byKey.get(key);
  if (known) return known;
  byKey.set(key, Object.freeze(fx));
  return fx;
}
