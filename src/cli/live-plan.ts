// `drover plan --live`: the plan the running daemon would make now (a dry run through its API: its latest
// snapshot, its policy), returned with that snapshot so the plan can be printed with VM names.
import type { Snapshot } from '../domain/snapshot.js';
import type { CreatedPlan } from '../service/operations.js';
import { CliError, connect, type ConnectionFlags } from './api-client.js';
import { EXIT } from './exit-codes.js';

export async function livePlan(
  flags: ConnectionFlags,
  drain: readonly string[],
): Promise<{ plan: CreatedPlan['plan']; snapshot: Snapshot }> {
  if (drain.length > 1)
    throw new CliError(
      EXIT.usage,
      'invalid_input',
      '--live plans one drain at a time: give one --drain host',
      'drain',
    );
  const client = await connect(flags);
  const snapshot = await client.get<Snapshot>('/v1/snapshots/latest');
  const body =
    drain[0] !== undefined
      ? { reason: 'drain', host: drain[0], dryRun: true }
      : { reason: 'rebalance', dryRun: true };
  const { plan } = await client.post<CreatedPlan>('/v1/plans', body);
  return { plan, snapshot };
}
