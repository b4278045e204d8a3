// The Policy: thresholds, limits, migration techniques, the watchdog profile and the rules the planner obeys.
// Shipped as YAML in policies/; every key has a default so a policy file states only what it changes.
import { z } from 'zod';
import { ValidationError } from './errors.js';
import {
  nonEmptyString,
  nonNegativeInt,
  nonNegativeNumber,
  oneOf,
  parseWith,
  percent,
  positiveInt,
  positiveNumber,
  show,
} from './validation.js';

// ---------------------------------------------------------------------------------------------------------
// Rules: json-rules-engine's rule format restricted to what drover evaluates (named scalar facts, the ten
// built-in operators, literal values), with a closed set of events.

/** What a block migration copies: whole disks, or only their top image layer. */
export const BLOCK_COPY_MODES = ['full', 'incremental'] as const;
export const PLANNED_DIRTY_RATES = ['typical', 'peak'] as const;
export type BlockCopyMode = (typeof BLOCK_COPY_MODES)[number];

/** Facts a rule may name, besides `vm.labels.<key>` and `host.labels.<key>`. `host` is the VM's current host. */
export const RULE_FACTS = [
  'vm.id',
  'vm.name',
  'vm.state',
  'vm.vcpus',
  'vm.memMiB',
  'vm.memUsedMiB',
  'vm.cpuPct',
  'vm.dirtyMiBps',
  'vm.dirtyPeakMiBps',
  'vm.storage',
  'vm.diskMiB',
  'vm.cpuModel',
  /** The VM's label names, a list: use with contains / doesNotContain to test that a label is set. */
  'vm.labelKeys',
  'host.id',
  'host.state',
  'host.cpus',
  'host.memMiB',
  'host.memUsedMiB',
  'host.memUsedPct',
  'host.cpuPct',
  'host.bandwidthMiBps',
  'host.cpuModel',
  'host.labelKeys',
] as const;
export const RULE_LABEL_FACT_PREFIXES = ['vm.labels.', 'host.labels.'] as const;

export const RULE_OPERATORS = [
  'equal',
  'notEqual',
  'in',
  'notIn',
  'contains',
  'doesNotContain',
  'lessThan',
  'lessThanInclusive',
  'greaterThan',
  'greaterThanInclusive',
] as const;
export type RuleOperator = (typeof RULE_OPERATORS)[number];

export const RULE_EVENT_TYPES = [
  'exclude',
  'pin',
  'downtimeBudget',
  'preferHosts',
  'avoidHosts',
  'antiAffinity',
  'affinity',
] as const;
export type RuleEventType = (typeof RULE_EVENT_TYPES)[number];

export type RuleScalar = string | number | boolean | null;

export interface RuleFactCondition {
  fact: string;
  operator: RuleOperator;
  value: RuleScalar | RuleScalar[];
  priority?: number | undefined;
}
export interface RuleAllCondition {
  all: RuleCondition[];
  priority?: number | undefined;
}
export interface RuleAnyCondition {
  any: RuleCondition[];
  priority?: number | undefined;
}
export interface RuleNotCondition {
  not: RuleCondition;
  priority?: number | undefined;
}
export type RuleBooleanCondition = RuleAllCondition | RuleAnyCondition | RuleNotCondition;
export type RuleCondition = RuleFactCondition | RuleBooleanCondition;

function isRuleFact(name: string): boolean {
  if ((RULE_FACTS as readonly string[]).includes(name)) return true;
  return RULE_LABEL_FACT_PREFIXES.some((p) => name.startsWith(p) && name.length > p.length);
}

const factName = z.string({ error: (i) => `expected a fact name, got ${show(i.input)}` }).refine(isRuleFact, {
  error: (i) =>
    `expected one of ${RULE_FACTS.join(', ')}, vm.labels.<key> or host.labels.<key>, got ${show(i.input)}`,
});

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()], {
  error: (i) => `expected a string, number, boolean or null, got ${show(i.input)}`,
});

const conditionPriority = positiveInt().optional();

const FactConditionSchema = z
  .strictObject({
    fact: factName,
    operator: oneOf(RULE_OPERATORS),
    value: z.union([scalar, z.array(scalar)], {
      error: (i) => `expected a literal value or a list of literals, got ${show(i.input)}`,
    }),
    priority: conditionPriority,
  })
  .superRefine((c, ctx) => {
    const listOp = c.operator === 'in' || c.operator === 'notIn';
    if (listOp && !Array.isArray(c.value)) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: `expected a list for operator ${c.operator}, got ${show(c.value)}`,
      });
    }
    if (!listOp && Array.isArray(c.value)) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: `expected a single value for operator ${c.operator}, got ${show(c.value)}`,
      });
    }
  });

export const RuleConditionSchema: z.ZodType<RuleCondition> = z.lazy(() =>
  z.union([AllSchema, AnySchema, NotSchema, FactConditionSchema], {
    error: (i) =>
      `expected a condition ({all}, {any}, {not} or {fact, operator, value}), got ${show(i.input)}`,
  }),
);
const AllSchema: z.ZodType<RuleAllCondition> = z.strictObject({
  all: z.array(z.lazy(() => RuleConditionSchema)),
  priority: conditionPriority,
});
const AnySchema: z.ZodType<RuleAnyCondition> = z.strictObject({
  any: z.array(z.lazy(() => RuleConditionSchema)),
  priority: conditionPriority,
});
const NotSchema: z.ZodType<RuleNotCondition> = z.strictObject({
  not: z.lazy(() => RuleConditionSchema),
  priority: conditionPriority,
});
const TopConditionSchema: z.ZodType<RuleBooleanCondition> = z.union([AllSchema, AnySchema, NotSchema], {
  error: (i) => `expected {all: [...]}, {any: [...]} or {not: {...}}, got ${show(i.input)}`,
});

const hostSelector = z
  .strictObject({
    /** Host ids. */
    hosts: z.array(nonEmptyString()).optional(),
    /** Every label listed must match. */
    labels: z.record(z.string(), z.string()).optional(),
  })
  .refine((s) => s.hosts !== undefined || s.labels !== undefined, {
    error: 'expected hosts or labels',
  });

const groupSelector = z
  .strictObject({
    /** A fixed group name: every VM the rule matches belongs to it. */
    group: nonEmptyString().optional(),
    /** One group per value of this VM label among the VMs the rule matches. */
    byLabel: nonEmptyString().optional(),
  })
  .refine((s) => (s.group === undefined) !== (s.byLabel === undefined), {
    error: 'expected exactly one of group or byLabel',
  });

export const RuleEventSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      type: z.literal('exclude'),
      params: z.strictObject({ reason: z.string().optional() }).optional(),
    }),
    z.strictObject({
      type: z.literal('pin'),
      params: z.strictObject({ reason: z.string().optional() }).optional(),
    }),
    z.strictObject({ type: z.literal('downtimeBudget'), params: z.strictObject({ ms: positiveNumber() }) }),
    z.strictObject({ type: z.literal('preferHosts'), params: hostSelector }),
    z.strictObject({ type: z.literal('avoidHosts'), params: hostSelector }),
    z.strictObject({ type: z.literal('antiAffinity'), params: groupSelector }),
    z.strictObject({ type: z.literal('affinity'), params: groupSelector }),
  ],
  { error: (i) => `expected an event type, one of ${RULE_EVENT_TYPES.join(' | ')}, got ${show(i.input)}` },
);

export const RuleSchema = z.strictObject({
  name: nonEmptyString(),
  /** json-rules-engine priority: higher runs first; on conflicting events the higher priority wins. */
  priority: positiveInt().default(1),
  conditions: TopConditionSchema,
  event: RuleEventSchema,
});

export type RuleEvent = z.output<typeof RuleEventSchema>;
export type Rule = z.output<typeof RuleSchema>;

// ---------------------------------------------------------------------------------------------------------
// The policy proper.

export const WATCHDOG_PROFILES = ['predictive', 'nova', 'kubevirt'] as const;
export type WatchdogProfileName = (typeof WATCHDOG_PROFILES)[number];

const BalanceSchema = z
  .strictObject({
    /** Largest allowed difference between the most and the least utilised active host, in points. */
    targetCpuSpreadPct: percent().default(20),
    targetMemSpreadPct: percent().default(20),
    /**
     * Deprecated spelling of `strategies.balance.holdTimeS` (still read; giving both with different values
     * is an error).
     */
    holdTimeS: nonNegativeNumber().optional(),
    /**
     * A rebalance that repairs no rule and relieves no host above its ceilings must lower the imbalance
     * (the points by which hosts stand outside the target band, see strategies/balance/README.md) by at
     * least this much, unless it brings every spread within target.
     */
    minImprovementPct: nonNegativeNumber().default(2),
    /** Memory balanced on what VMs are allocated, or on what their guests use (falls back to allocated). */
    memoryBasis: oneOf(['allocated', 'used'] as const).default('allocated'),
    /**
     * `spread`: act when a spread exceeds its target (or a host is above a ceiling, or a rule is broken);
     * `threshold`: act only when some host is above a ceiling or a rule is broken.
     */
    trigger: oneOf(['spread', 'threshold'] as const).default('spread'),
    /** Only relieve hosts above their ceilings (and repair rules); never even out hosts below them. */
    offloadOnly: z.boolean().default(false),
  })
  .prefault({});

const HostLimitsSchema = z
  .strictObject({
    /** A host is not filled above these (percent of its CPUs / memory). */
    cpuCeilingPct: percent().default(85),
    memCeilingPct: percent().default(90),
    /** Kept free on every host whatever the ceiling says. */
    cpuReservePct: percent().default(0),
    memReserveMiB: nonNegativeNumber().default(4096),
    /**
     * vCPUs a host may be allocated per usable core (Nova's cpu_allocation_ratio; 16 is Nova's initial
     * ratio); null: no limit.
     */
    vcpuAllocationRatio: positiveNumber().nullable().default(16),
    /** Cores kept for the host itself, not allocatable to VMs (Nova's reserved_host_cpus). */
    reservedCpus: nonNegativeInt().default(0),
  })
  .prefault({});

const LimitsSchema = z
  .strictObject({
    maxMovesPerRun: positiveInt().default(20),
    /** Concurrent migrations per host (outbound and inbound each) and in the whole cluster. */
    perHostConcurrency: positiveInt().default(2),
    perClusterConcurrency: positiveInt().default(8),
  })
  .prefault({});

const VmLimitsSchema = z
  .strictObject({
    /** A VM is not moved again by a rebalance sooner than this after its last migration. */
    cooldownS: nonNegativeNumber().default(3600),
    /** At most this many migrations of one VM in any 24 hours (rebalance only; drains always go). */
    maxMigrationsPerDay: positiveInt().default(4),
    /** Max downtime allowed at switch-over unless a rule sets another. */
    defaultDowntimeBudgetMs: positiveNumber().default(300),
  })
  .prefault({});

const MigrationSchema = z
  .strictObject({
    allowAutoConverge: z.boolean().default(false),
    allowPostCopy: z.boolean().default(false),
    allowBlockMigration: z.boolean().default(true),
    /**
     * What a block migration copies: `full` whole disks (the destination needs nothing but room), or
     * `incremental` only the top image layer (saves bandwidth; the disks' backing files are copied to the
     * destination first when it lacks them).
     */
    blockCopy: oneOf(BLOCK_COPY_MODES).default('full'),
    /** Link bandwidth assumed for hosts that report none. */
    defaultBandwidthMiBps: positiveNumber().default(1150),
    /** A migration predicted to take longer than this is not planned. */
    maxDurationS: positiveNumber().default(900),
    /**
     * Safety margin on maxDurationS (percent): a migration must be predicted to finish within maxDurationS
     * less this share, because one that needs nearly all of it is as likely to be cut off as to finish.
     */
    durationMarginPct: nonNegativeNumber().max(90).default(10),
    /** Pre-copy rounds after which a migration is considered not converging. */
    maxIterations: positiveInt().default(30),
    /**
     * Which of the collector's dirty rates the model plans with. `typical`: the VM's mean rate (vm.dirtyMiBps,
     * an even mean of its first readings, then an EWMA), what a pre-copy round seconds long sees of a guest
     * that writes in bursts. `peak`: its high percentile (vm.dirtyPeakMiBps), for fleets whose guests' load
     * swings within the hour; it turns away bursty guests that would converge. Either falls back to the other
     * when missing.
     */
    plannedDirtyRate: oneOf(PLANNED_DIRTY_RATES).default('typical'),
    /** Dirty rate assumed when a running VM's was not measured; null: such VMs are not moved by rebalance. */
    assumeDirtyMiBpsWhenUnknown: nonNegativeNumber().nullable().default(null),
    /** Fixed costs the model adds: connection and setup, and device state at switch-over. */
    setupS: nonNegativeNumber().default(1),
    switchoverOverheadMs: nonNegativeNumber().default(20),
    /** Guest pause when switching to post-copy (device state and dirty bitmap). */
    postCopySwitchoverMs: nonNegativeNumber().default(60),
  })
  .prefault({});

const PredictiveWatchdogSchema = z
  .strictObject({
    /** Deadline = predicted duration x factor + margin. */
    deadlineFactor: positiveNumber().default(2),
    deadlineMarginS: nonNegativeNumber().default(30),
    /** A stall is remaining memory not falling over this many predicted rounds (at least minStallWindowS). */
    stallRounds: positiveNumber().default(3),
    minStallWindowS: positiveNumber().default(10),
  })
  .prefault({});

const NovaWatchdogSchema = z
  .strictObject({
    /** Nova live_migration_completion_timeout, seconds per GiB. */
    completionTimeoutPerGiBS: positiveNumber().default(800),
    /** Nova live_migration_downtime, _steps and _delay (seconds per GiB). */
    maxDowntimeMs: positiveNumber().default(500),
    downtimeSteps: positiveInt().default(10),
    downtimeDelayPerGiBS: positiveNumber().default(75),
  })
  .prefault({});

const KubevirtWatchdogSchema = z
  .strictObject({
    /** KubeVirt completionTimeoutPerGiB (per 10^9 bytes) and progressTimeout. */
    completionTimeoutPerGiBS: positiveNumber().default(150),
    progressTimeoutS: positiveNumber().default(150),
    maxDowntimeMs: positiveNumber().default(900),
  })
  .prefault({});

const WatchdogSchema = z
  .strictObject({
    profile: oneOf(WATCHDOG_PROFILES).default('predictive'),
    pollIntervalMs: positiveInt().default(500),
    /** Steps by which the watchdog may raise max downtime (never above the VM's budget). */
    downtimeRaiseSteps: nonNegativeInt().default(3),
    predictive: PredictiveWatchdogSchema,
    nova: NovaWatchdogSchema,
    kubevirt: KubevirtWatchdogSchema,
  })
  .prefault({});

/**
 * One strategy's settings (`strategies.<name>`). Which names exist and what their args may hold is the
 * planner's to check (src/planner/policy-strategies.ts): the domain knows no strategy.
 */
const StrategySettingsSchema = z.strictObject({
  /**
   * Seconds after an executed plan of this strategy before the daemon's schedule plans with it again;
   * default: the strategy's own (balance and consolidate 900, drain 0).
   */
  holdTimeS: nonNegativeNumber().optional(),
  /** The strategy's arguments whenever it runs (a request's own arguments win, field by field). */
  args: z
    .record(z.string(), z.unknown(), { error: (i) => `expected an object, got ${show(i.input)}` })
    .optional(),
});
export type StrategySettings = z.output<typeof StrategySettingsSchema>;

export const PolicySchema = z.strictObject({
  version: z.literal(1, { error: (i) => `expected 1, got ${show(i.input)}` }).default(1),
  balance: BalanceSchema,
  hosts: HostLimitsSchema,
  limits: LimitsSchema,
  vms: VmLimitsSchema,
  migration: MigrationSchema,
  watchdog: WatchdogSchema,
  /** Per-strategy settings, by strategy name. */
  strategies: z
    .record(z.string(), StrategySettingsSchema, { error: (i) => `expected an object, got ${show(i.input)}` })
    .default({}),
  rules: z.array(RuleSchema).default([]),
});

type ParsedPolicy = z.output<typeof PolicySchema>;
/** A validated policy; `balance.holdTimeS` has moved to `strategies.balance.holdTimeS`. */
export type Policy = Omit<ParsedPolicy, 'balance'> & { balance: Omit<ParsedPolicy['balance'], 'holdTimeS'> };
/** What a policy file may contain (every key optional). */
export type PolicyInput = z.input<typeof PolicySchema>;

/** Validates a policy (already parsed from YAML/JSON), filling defaults; errors name each field's path. */
export function parsePolicy(data: unknown, source = ''): Policy {
  const policy = parseWith(PolicySchema, data ?? {}, source);
  const names = new Map<string, number>();
  const issues: { path: string; message: string }[] = [];
  policy.rules.forEach((r, i) => {
    const first = names.get(r.name);
    if (first !== undefined)
      issues.push({
        path: `rules[${i}].name`,
        message: `duplicate rule name ${show(r.name)} (rules[${first}])`,
      });
    else names.set(r.name, i);
  });
  // balance.holdTimeS, the old place of the balance strategy's hold time, still loads.
  const { holdTimeS: oldHold, ...balance } = policy.balance;
  const strategies = { ...policy.strategies };
  if (oldHold !== undefined) {
    const current = strategies.balance?.holdTimeS;
    if (current !== undefined && current !== oldHold)
      issues.push({
        path: 'balance.holdTimeS',
        message: `${oldHold} differs from strategies.balance.holdTimeS (${current}); keep strategies.balance.holdTimeS only`,
      });
    else strategies.balance = { ...strategies.balance, holdTimeS: oldHold };
  }
  if (issues.length > 0) throw new ValidationError(source, issues);
  return { ...policy, balance, strategies };
}

/** The built-in defaults (what an empty policy file means). */
export const DEFAULT_POLICY: Policy = parsePolicy({});
