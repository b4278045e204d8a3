// The policy in force, reloaded on SIGHUP or when its file changes. A reload that fails validation keeps the
// policy that was in force, logs every problem and counts the rejection (drover_policy_reloads_total).
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { errorMessage } from '../domain/errors.js';
import type { Policy } from '../domain/policy.js';
import type { DroverMetrics } from '../metrics/metrics.js';

export interface PolicyReloaderLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface PolicyReloaderDeps {
  path: string;
  load: (path: string) => Promise<Policy>;
  metrics?: Pick<DroverMetrics, 'policyReloads'>;
  log?: PolicyReloaderLogger;
  /** Called with each newly applied policy. */
  onChange?: (policy: Policy) => void;
}

export type ReloadOutcome = { applied: true } | { applied: false; error: string };

export class PolicyReloader {
  private policy: Policy;
  private watcher: FSWatcher | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private reloading: Promise<ReloadOutcome> | null = null;

  private constructor(
    private readonly deps: PolicyReloaderDeps,
    initial: Policy,
  ) {
    this.policy = initial;
  }

  /** Loads the policy for the first time; a bad policy here throws (the daemon must not start with it). */
  static async open(deps: PolicyReloaderDeps): Promise<PolicyReloader> {
    return new PolicyReloader(deps, await deps.load(deps.path));
  }

  current(): Policy {
    return this.policy;
  }

  get path(): string {
    return this.deps.path;
  }

  /** Re-reads the file; keeps the current policy when the new one is bad. Reloads never run twice at once. */
  async reload(trigger: string): Promise<ReloadOutcome> {
    if (this.reloading) await this.reloading;
    this.reloading = this.doReload(trigger);
    try {
      return await this.reloading;
    } finally {
      this.reloading = null;
    }
  }

  /** Watches the policy file's directory (editors replace files rather than write them in place). */
  watch(debounceMs = 200): void {
    if (this.watcher) return;
    const file = basename(this.deps.path);
    this.watcher = watch(dirname(this.deps.path), (_event, name) => {
      if (name !== null && name !== file) return;
      if (this.debounce) clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload('file-watch'), debounceMs);
    });
    this.watcher.unref();
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = null;
  }

  private async doReload(trigger: string): Promise<ReloadOutcome> {
    try {
      const next = await this.deps.load(this.deps.path);
      if (JSON.stringify(next) === JSON.stringify(this.policy)) {
        this.deps.metrics?.policyReloads.inc({ outcome: 'unchanged' });
        return { applied: true };
      }
      this.policy = next;
      this.deps.metrics?.policyReloads.inc({ outcome: 'applied' });
      this.deps.log?.info({ module: 'policy', trigger, path: this.deps.path }, 'policy reloaded');
      this.deps.onChange?.(next);
      return { applied: true };
    } catch (err) {
      const error = errorMessage(err);
      this.deps.metrics?.policyReloads.inc({ outcome: 'rejected' });
      this.deps.log?.error(
        { module: 'policy', trigger, path: this.deps.path, err: error },
        'policy reload rejected; keeping the policy in force',
      );
      return { applied: false, error };
    }
  }
}
