// The planner in a worker thread (started by PlannerThread): receives a rebalance request, answers with the
// plan or the error. Pure planning only; no Redis, no hypervisor.
import { parentPort } from 'node:worker_threads';
import type { VmHistory } from '../domain/history.js';
import type { Policy } from '../domain/policy.js';
import type { Snapshot } from '../domain/snapshot.js';
import { planRebalance } from '../planner/index.js';

export interface PlanRequest {
  id: number;
  snapshot: Snapshot;
  policy: Policy;
  now: number;
  history: Map<string, VmHistory> | undefined;
}

export type PlanReply =
  | { id: number; ok: true; plan: ReturnType<typeof planRebalance> }
  | { id: number; ok: false; error: { name: string; code: string; message: string } };

parentPort?.on('message', (request: PlanRequest) => {
  let reply: PlanReply;
  try {
    const plan = planRebalance(request.snapshot, request.policy, {
      now: request.now,
      history: request.history,
    });
    reply = { id: request.id, ok: true, plan };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const code = (e as { code?: unknown }).code;
    reply = {
      id: request.id,
      ok: false,
      error: { name: e.name, code: typeof code === 'string' ? code : 'planner_failed', message: e.message },
    };
  }
  parentPort?.postMessage(reply);
});
