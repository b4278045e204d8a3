// Plan ids: `<reason>-<UTC time to the millisecond>-<counter><random>`, e.g.
// `drain-20261203-163012345Z-0007a3f9c1b2`. The time comes first, so ids sort in the order plans were made;
// the per-process counter and 32 random bits keep ids made in the same millisecond, by this process or by
// another, apart. The planner itself stays deterministic: the service gives a plan its id when it stores it.
import { randomBytes } from 'node:crypto';
import type { PlanReason } from '../domain/plan.js';

let counter = 0;

export function newPlanId(reason: PlanReason, nowMs: number): string {
  const time = new Date(nowMs).toISOString().replace(/[-:.]/g, '').replace('T', '-').slice(0, 22);
  counter = (counter + 1) % 36 ** 4;
  return `${reason}-${time}-${counter.toString(36).padStart(4, '0')}${randomBytes(4).toString('hex')}`;
}
