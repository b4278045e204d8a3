// Arguments of the consolidate strategy (all optional; the policy supplies the rest).
import { z } from 'zod';
import { percent, positiveInt } from '../../../domain/validation.js';

export const ConsolidateArgsSchema = z
  .strictObject({
    /** Overrides policy.limits.maxMovesPerRun for this run. */
    maxMoves: positiveInt().optional(),
    /** Free at most this many hosts in one run. */
    maxHosts: positiveInt().optional(),
    /** Receivers are filled up to these utilisations at most (below the policy's ceilings, which also hold). */
    fillCpuPct: percent().optional(),
    fillMemPct: percent().optional(),
  })
  .prefault({});

export type ConsolidateArgs = z.output<typeof ConsolidateArgsSchema>;
