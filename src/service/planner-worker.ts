// The planner in a worker thread (started by PlannerThread): receives a rebalance request, answers with the
// plan or the error. Pure planning only; no Redis, no hypervisor.
import { parentPort } from 'node:worker_threads';
import type { Plan } from '../domain/plan.js';
import { planInput, type RebalanceInput } from './plan-input.js';

export interface PlanRequest {
  id: number;
  input: RebalanceInput;
}

export type PlanReply =
  | { id: number; ok: true; plan: Plan }
  | { id: number; ok: false; error: { name: string; code: string; message: string } };

parentPort?.on('message', (request: PlanRequest) => {
  let reply: PlanReply;
  try {
    const plan = planInput(request.input);
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
