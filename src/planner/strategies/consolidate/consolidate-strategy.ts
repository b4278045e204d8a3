// `consolidate`: pack VMs onto fewer hosts so that whole hosts become empty (to power them down or lend
// them out). Hosts are tried emptiest first; all of a host's VMs must find a place (largest first, each on
// the host it fills most tightly, best fit) or none of them moves. Freed hosts receive nothing afterwards.
// The same constraints as every plan: capacity under ceilings and reserves (and the optional fill limits),
// rules, anti-affinity and affinity, CPU model, storage, and every move predicted to converge.
import type { Skip, Step } from '../../../domain/plan.js';
import type { ClusterModel } from '../../constraints/cluster-model.js';
import { defineStrategy, makeStep, pct, type StrategyContext, type StrategyResult } from '../strategy.js';
import { ConsolidateArgsSchema, type ConsolidateArgs } from './consolidate-args.js';

const EPS = 1e-9;

/** Where VM v packs best: the receiver it leaves with the least memory room, or -1 and why not. */
function bestFit(
  m: ClusterModel,
  v: number,
  closed: Uint8Array,
  fill: { cpuPct: number; memPct: number },
): { to: number; why: string } {
  const cpu = m.vmCpu[v] ?? 0;
  const mem = m.vmMem[v] ?? 0;
  const from = m.vmHost[v] ?? 0;
  const cands: { t: number; room: number }[] = [];
  for (let t = 0; t < m.hostCount; t += 1) {
    if (t === from || closed[t] || !m.receivable[t] || !m.fits(v, t)) continue;
    const host = m.hosts[t];
    if (!host) continue;
    const cAfter = (m.cpuLoad[t] ?? 0) + cpu;
    const mAfter = (m.memLoad[t] ?? 0) + mem;
    if (cAfter > (fill.cpuPct / 100) * host.cpus + EPS || mAfter > (fill.memPct / 100) * host.memMiB + EPS)
      continue;
    cands.push({ t, room: (fill.memPct / 100) * host.memMiB - mAfter });
  }
  cands.sort((a, b) => a.room - b.room || a.t - b.t);
  let why = 'no other host has room';
  for (const { t } of cands) {
    const p = m.placementProblem(v, t);
    if (p !== null) {
      why = p;
      continue;
    }
    const f = m.forecast(v, t);
    if (!f.prediction.converges) {
      why = f.reason ?? 'predicted not to converge';
      continue;
    }
    return { to: t, why: '' };
  }
  return { to: -1, why };
}

function planConsolidate(ctx: StrategyContext, args: ConsolidateArgs): StrategyResult {
  const m = ctx.model;
  const pol = m.policy;
  const maxMoves = args.maxMoves ?? pol.limits.maxMovesPerRun;
  const maxHosts = args.maxHosts ?? Number.POSITIVE_INFINITY;
  const fill = {
    cpuPct: Math.min(args.fillCpuPct ?? 100, pol.hosts.cpuCeilingPct),
    memPct: Math.min(args.fillMemPct ?? 100, pol.hosts.memCeilingPct),
  };
  // Candidates: hosts that count, emptiest (by memory, then by VM count) first.
  const candidates: number[] = [];
  for (let h = 0; h < m.hostCount; h += 1)
    if (m.inSpread[h] && m.receivable[h] && (m.hostVms[h]?.length ?? 0) > 0) candidates.push(h);
  candidates.sort(
    (a, b) => m.memPct(a) - m.memPct(b) || (m.hostVms[a]?.length ?? 0) - (m.hostVms[b]?.length ?? 0) || a - b,
  );
  const closed = new Uint8Array(m.hostCount);
  const steps: Step[] = [];
  const skipped: Skip[] = [];
  const freed: string[] = [];
  let blockedByLimit = false;
  for (const h of candidates) {
    if (freed.length >= maxHosts) break;
    const host = m.hosts[h];
    const vms = [...(m.hostVms[h] ?? [])];
    // A host that took VMs in this plan stays in use.
    if (!host || vms.length === 0 || vms.some((v) => m.moved[v])) continue;
    if (steps.length + vms.length > maxMoves) {
      blockedByLimit = true;
      continue;
    }
    // Every VM must be able to leave at all, over its own host's link.
    const stuck = vms
      .map((v) => ({ v, why: m.immovable(v, 'rebalance') ?? blockingForecast(m, v) }))
      .find((x) => x.why !== null);
    if (stuck) {
      skipped.push({ vm: m.vms[stuck.v]?.id ?? '', why: `keeps ${host.id} in use: ${stuck.why ?? ''}` });
      continue;
    }
    closed[h] = 1;
    vms.sort((a, b) => (m.vmMem[b] ?? 0) - (m.vmMem[a] ?? 0) || (m.vmCpu[b] ?? 0) - (m.vmCpu[a] ?? 0));
    const trial: Step[] = [];
    const placed: number[] = [];
    const hostMem = pct(m.memPct(h));
    let failed: { v: number; why: string } | null = null;
    for (const v of vms) {
      const { to, why } = bestFit(m, v, closed, fill);
      if (to < 0) {
        failed = { v, why };
        break;
      }
      const dst = m.hosts[to];
      trial.push(
        makeStep(
          m,
          v,
          to,
          `empties ${host.id} (${vms.length} VMs, mem ${hostMem}) to free it; ` +
            `${dst?.id ?? ''} mem ${pct(m.memPct(to))} has room`,
        ),
      );
      m.move(v, to);
      placed.push(v);
    }
    if (failed) {
      // All or nothing: take this host's moves back and keep it.
      for (let i = placed.length - 1; i >= 0; i -= 1) m.unmove(placed[i] as number);
      closed[h] = 0;
      skipped.push({ vm: m.vms[failed.v]?.id ?? '', why: `keeps ${host.id} in use: ${failed.why}` });
      continue;
    }
    steps.push(...trial);
    freed.push(host.id);
  }
  const result: StrategyResult = { steps, skipped };
  if (freed.length > 0)
    result.note = `frees ${freed.length} host${freed.length === 1 ? '' : 's'}: ${freed.join(', ')}`;
  else
    result.note = blockedByLimit
      ? `no host can be freed within the limit of ${maxMoves} moves`
      : 'no host can be freed within the constraints';
  return result;
}

function blockingForecast(m: ClusterModel, v: number): string | null {
  const f = m.forecast(v, m.vmHost[v] ?? 0);
  return f.prediction.converges ? null : (f.reason ?? 'predicted not to converge');
}

export const consolidateStrategy = defineStrategy<ConsolidateArgs>({
  name: 'consolidate',
  reason: 'rebalance',
  description: 'pack VMs onto fewer hosts to free whole hosts',
  argsSchema: ConsolidateArgsSchema,
  holdTimeS: 900,
  plan: planConsolidate,
});
