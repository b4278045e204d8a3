// Rebalance planning of large clusters on a worker thread, so the daemon's event loop (lease renewal, the
// HTTP API, BullMQ workers, the collector) keeps running while a plan over thousands of VMs is worked out.
// Small clusters are planned in place: copying the snapshot to the thread would cost more than planning.
// If the thread cannot be started or dies, planning falls back to the main thread (logged once).
import { Worker } from 'node:worker_threads';
import { DroverError, errorMessage, isDroverErrorCode } from '../domain/errors.js';
import type { Plan } from '../domain/plan.js';
import { planInput, type RebalanceInput } from './plan-input.js';
import type { PlanReply, PlanRequest } from './planner-worker.js';

export type { RebalanceInput } from './plan-input.js';

export interface PlannerThreadOptions {
  /** Snapshots with at least this many VMs are planned on the thread. */
  minVms: number;
  log?: { warn(obj: object, msg: string): void };
}

/** Default threshold: below this many VMs a rebalance plans in well under 50 ms. */
export const PLANNER_THREAD_MIN_VMS = 2_000;

// The thread's entry: the compiled planner-worker.js, or from the sources (under tsx) planner-worker.ts with
// tsx's loader registered inside the thread first. A CommonJS bootstrap evaluated in the thread does both.
const BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsxApi) (await import(workerData.tsxApi)).register();
  await import(workerData.entry);
})().catch((err) => { setImmediate(() => { throw err; }); });
`;

function workerEntry(): { entry: string; tsxApi: string | null } {
  const fromSources = import.meta.url.endsWith('.ts');
  const entry = new URL(`./planner-worker.${fromSources ? 'ts' : 'js'}`, import.meta.url).href;
  return { entry, tsxApi: fromSources ? import.meta.resolve('tsx/esm/api') : null };
}

export class PlannerThread {
  private worker: Worker | null = null;
  private broken = false;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { input: RebalanceInput; resolve: (p: Plan) => void; reject: (e: Error) => void }
  >();

  constructor(private readonly options: PlannerThreadOptions) {}

  /** Plans a rebalance: on the thread for large snapshots, else (or when the thread is broken) in place. */
  async rebalance(input: RebalanceInput): Promise<Plan> {
    if (this.broken || input.snapshot.vms.length < this.options.minVms) return this.inPlace(input);
    const worker = this.ensureWorker();
    const id = this.nextId++;
    const request: PlanRequest = {
      id,
      input: { ...input, history: input.history ? new Map(input.history) : undefined },
    };
    return new Promise<Plan>((resolve, reject) => {
      this.pending.set(id, { input, resolve, reject });
      worker.postMessage(request);
    });
  }

  /** Stops the thread (pending plans are refused). */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.failPending(new DroverError('planner_closed', 'the planner thread was stopped'));
    if (worker) await worker.terminate();
  }

  private inPlace(input: RebalanceInput): Plan {
    return planInput(input);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const { entry, tsxApi } = workerEntry();
    const worker = new Worker(BOOTSTRAP, { eval: true, workerData: { entry, tsxApi } });
    worker.unref();
    worker.on('message', (reply: PlanReply) => {
      const waiting = this.pending.get(reply.id);
      if (!waiting) return;
      this.pending.delete(reply.id);
      if (reply.ok) waiting.resolve(reply.plan);
      else {
        const code = isDroverErrorCode(reply.error.code) ? reply.error.code : 'planner_failed';
        const err = new DroverError(code, reply.error.message);
        err.name = reply.error.name;
        waiting.reject(err);
      }
    });
    const broke = (why: string) => {
      if (this.worker !== worker) return;
      this.worker = null;
      this.broken = true;
      this.options.log?.warn({ module: 'planner', err: why }, 'planner thread failed; planning in place');
      // What was sent to the thread is planned here instead.
      const waiting = [...this.pending.values()];
      this.pending.clear();
      for (const w of waiting) {
        try {
          w.resolve(this.inPlace(w.input));
        } catch (err) {
          w.reject(err instanceof Error ? err : new Error(String(err)));
        }
      }
    };
    worker.on('error', (err) => broke(errorMessage(err)));
    worker.on('exit', (code) => broke(`exited with code ${code}`));
    this.worker = worker;
    return worker;
  }

  private failPending(err: Error): void {
    for (const { reject } of this.pending.values()) reject(err);
    this.pending.clear();
  }
}
