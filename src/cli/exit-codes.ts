// The `drover` command's exit codes (documented in docs/cli.md). Commands import them from here.
export const EXIT = {
  /** Done as asked. */
  ok: 0,
  /** It ran and failed: a migration failed, a doctor check failed, the daemon stopped with an error. */
  failure: 1,
  /** Wrong command line (unknown option, missing argument) or a question that needed --yes. */
  usage: 2,
  /** Bad input: a config, policy, snapshot or request the daemon refused, naming the field; unknown host/VM/plan. */
  badInput: 3,
  /** The daemon, Redis or a host could not be reached. */
  unreachable: 4,
  /** Finished, but not everything moved (VMs skipped, migrations aborted, plan waiting for approval). */
  notConverged: 5,
  /** The daemon refused the token (unknown token, or a read token for a change). */
  denied: 6,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
