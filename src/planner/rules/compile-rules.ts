// Compiles drover's rules (json-rules-engine's format) into plain synchronous predicates, once, so that a
// whole cluster is evaluated in one pass instead of one promise chain per VM. The semantics are exactly
// json-rules-engine's (operators with their fact-type guards, empty `all`/`any` being true, `not`, rule
// priorities); test/planner/rules-differential.test.ts holds it to that on random rules and facts.
import type { Rule, RuleCondition, RuleOperator, RuleScalar } from '../../domain/policy.js';
import type { Host, Vm } from '../../domain/snapshot.js';
import { factReader, type FactValue } from './rule-facts.js';

type Predicate = (vm: Vm, host: Host) => boolean;

// json-rules-engine's guard for the numeric operators. For a number, parseFloat of its string form is NaN
// only when the number is NaN, so that case skips the two string conversions.
const isNumeric = (v: FactValue): boolean =>
  typeof v === 'number' ? !Number.isNaN(v) : Number.parseFloat(v as unknown as string).toString() !== 'NaN';

function compileOperator(op: RuleOperator, value: RuleScalar | RuleScalar[]): (a: FactValue) => boolean {
  // The comparisons below are JavaScript's, on whatever types the fact and value have, as in the reference.
  const b = value as unknown as number;
  const list = value as unknown as FactValue[];
  switch (op) {
    case 'equal':
      return (a) => a === value;
    case 'notEqual':
      return (a) => a !== value;
    case 'in':
      return (a) => list.indexOf(a) > -1;
    case 'notIn':
      return (a) => list.indexOf(a) === -1;
    case 'contains':
      return (a) => Array.isArray(a) && (a as unknown[]).indexOf(value) > -1;
    case 'doesNotContain':
      return (a) => Array.isArray(a) && (a as unknown[]).indexOf(value) === -1;
    case 'lessThan':
      return (a) => isNumeric(a) && (a as number) < b;
    case 'lessThanInclusive':
      return (a) => isNumeric(a) && (a as number) <= b;
    case 'greaterThan':
      return (a) => isNumeric(a) && (a as number) > b;
    case 'greaterThanInclusive':
      return (a) => isNumeric(a) && (a as number) >= b;
  }
}

function compileCondition(c: RuleCondition): Predicate {
  if ('all' in c) {
    const parts = c.all.map(compileCondition);
    return (vm, host) => {
      for (const p of parts) if (!p(vm, host)) return false;
      return true;
    };
  }
  if ('any' in c) {
    const parts = c.any.map(compileCondition);
    // json-rules-engine treats an empty `any` as satisfied.
    if (parts.length === 0) return () => true;
    return (vm, host) => {
      for (const p of parts) if (p(vm, host)) return true;
      return false;
    };
  }
  if ('not' in c) {
    const inner = compileCondition(c.not);
    return (vm, host) => !inner(vm, host);
  }
  const read = factReader(c.fact);
  if (!read) throw new Error(`unknown fact ${c.fact}`);
  const test = compileOperator(c.operator, c.value);
  return (vm, host) => test(read(vm, host));
}

export interface CompiledRules {
  /** The rules in evaluation order: priority high to low, then as written. */
  readonly rules: readonly Rule[];
  /** Indexes (into `rules` as given to compileRules) of the rules that fire for this VM, in evaluation order. */
  fired(vm: Vm, host: Host): number[];
  /** The same into `out` (overwritten from index 0, not truncated); returns how many fired. */
  firedInto(vm: Vm, host: Host, out: number[]): number;
  /** True when no rule can fire for anything (lets callers skip the pass). */
  readonly empty: boolean;
}

export function compileRules(rules: readonly Rule[]): CompiledRules {
  const order = rules.map((r, i) => ({ r, i })).sort((a, b) => b.r.priority - a.r.priority || a.i - b.i);
  const index = order.map(({ i }) => i);
  const preds = order.map(({ r }) => compileCondition(r.conditions));
  const firedInto = (vm: Vm, host: Host, out: number[]): number => {
    let n = 0;
    for (let k = 0; k < preds.length; k += 1)
      if ((preds[k] as Predicate)(vm, host)) out[n++] = index[k] as number;
    return n;
  };
  return {
    rules,
    empty: rules.length === 0,
    fired(vm, host) {
      const out: number[] = [];
      out.length = firedInto(vm, host, out);
      return out;
    },
    firedInto,
  };
}
