// json-rules-engine itself, run the slow and authoritative way: one engine run per VM. The compiled rules
// must always agree with this (differential test), and the rules benchmark measures both.
import { Engine } from 'json-rules-engine';
import type { Rule } from '../../../src/domain/policy.js';
import type { Host, Vm } from '../../../src/domain/snapshot.js';
import { factsOf } from '../../../src/planner/rules/rule-facts.js';

export interface ReferenceEngine {
  /** Indexes of the rules that fire for this VM, sorted ascending. */
  fired(vm: Vm, host: Host): Promise<number[]>;
}

export function referenceEngine(rules: readonly Rule[]): ReferenceEngine {
  const engine = new Engine([], { allowUndefinedFacts: true });
  const index = new Map<string, number>();
  rules.forEach((r, i) => {
    index.set(r.name, i);
    engine.addRule({
      name: r.name,
      priority: r.priority,
      conditions: r.conditions as never,
      event: r.event as never,
    });
  });
  return {
    async fired(vm, host) {
      const { results } = await engine.run(factsOf(vm, host) as Record<string, unknown>);
      const out: number[] = [];
      for (const res of results) {
        const i = index.get(String(res.name));
        if (res.result && i !== undefined) out.push(i);
      }
      return out.sort((a, b) => a - b);
    },
  };
}
