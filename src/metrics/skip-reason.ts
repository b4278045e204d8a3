// The bounded `reason` label of drover_plan_skipped_vms_total, read from a skipped VM's free-text `why`.
// The planner's texts name hosts and times; the label keeps only the kind, so the series stay few.
export const SKIP_REASONS = [
  'excluded',
  'pinned',
  'cooldown',
  'daily_budget',
  'quarantined',
  'storage',
  'no_room',
  'cpu_model',
  'not_converging',
  'other',
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

const PATTERNS: readonly [RegExp, SkipReason][] = [
  [/excluded by rule/, 'excluded'],
  [/pinned by rule/, 'pinned'],
  [/in cooldown/, 'cooldown'],
  [/daily budget/, 'daily_budget'],
  [/quarantined/, 'quarantined'],
  [/block migration|storage/, 'storage'],
  [/lacks room|cannot receive|no host|no target|capacity/, 'no_room'],
  [/CPU model/, 'cpu_model'],
  [/converge|dirty rate/, 'not_converging'],
];

export function skipReason(why: string): SkipReason {
  for (const [re, reason] of PATTERNS) if (re.test(why)) return reason;
  return 'other';
}
