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
  prefer: HostSelector[];
  avoid: HostSelector[];
  /** Group keys (unique across rules) the VM belongs to. */
  antiAffinity: string[];
  affinity: string[];
}

export function hostMatches(sel: HostSelector, host: Host): boolean {
  if (sel.hosts && !sel.hosts.includes(host.id)) return false;
  if (sel.labels) {
    for (const [k, v] of Object.entries(sel.labels)) if (host.labels?.[k] !== v) return false;
  }
  return true;
}

function groupKey(rule: Rule, params: { group?: string | undefined; byLabel?: string | undefined }, vm: Vm) {
  if (params.group !== undefined) return `${rule.name}/${params.group}`;
  const value = params.byLabel !== undefined ? vm.labels?.[params.byLabel] : undefined;
  return value === undefined ? undefined : `${rule.name}/${params.byLabel}=${value}`;
}

/**
 * Evaluates the rules for every VM. Returns one entry per VM index (undefined when no rule fired), sparse
 * so a 100,000-VM cluster with few matches costs little.
 */
export function evaluateRuleEffects(
  rules: readonly Rule[],
  vms: readonly Vm[],
  hostOf: (vm: Vm) => Host,
): (VmRuleEffects | undefined)[] {
  const out: (VmRuleEffects | undefined)[] = new Array<VmRuleEffects | undefined>(vms.length);
  if (rules.length === 0) return out;
  const compiled = compileRules(rules);
  for (let v = 0; v < vms.length; v += 1) {
    const vm = vms[v];
    if (!vm) continue;
    const fired = compiled.fired(vm, hostOf(vm));
    if (fired.length === 0) continue;
    const fx: VmRuleEffects = { prefer: [], avoid: [], antiAffinity: [], affinity: [] };
    let budgetPriority = -1;
    for (const i of fired) {
      const rule = rules[i];
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
          fx.prefer.push(ev.params);
          break;
        case 'avoidHosts':
          fx.avoid.push(ev.params);
          break;
        case 'antiAffinity': {
          const k = groupKey(rule, ev.params, vm);
          if (k !== undefined) fx.antiAffinity.push(k);
          break;
        }
        case 'affinity': {
          const k = groupKey(rule, ev.params, vm);
          if (k !== undefined) fx.affinity.push(k);
          break;
        }
      }
    }
    out[v] = fx;
  }
  return out;
}
