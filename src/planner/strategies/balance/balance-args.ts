// Arguments of the balance strategy (all optional; the policy supplies the rest).
import { z } from 'zod';
import { positiveInt } from '../../../domain/validation.js';

export const BalanceArgsSchema = z
  .strictObject({
    /** Overrides policy.limits.maxMovesPerRun for this run. */
    maxMoves: positiveInt().optional(),
  })
  .prefault({});

export type BalanceArgs = z.output<typeof BalanceArgsSchema>;
