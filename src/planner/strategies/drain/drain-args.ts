// Arguments of the drain strategy.
import { z } from 'zod';
import { nonEmptyString } from '../../../domain/validation.js';

export const DrainArgsSchema = z
  .strictObject({
    /** Hosts to empty; by default every host whose state is `maintenance`. */
    hosts: z.array(nonEmptyString()).optional(),
    /** Move what can move even when some VMs cannot leave (default: nothing moves unless all can). */
    allowPartial: z.boolean().default(false),
  })
  .prefault({});

export type DrainArgs = z.output<typeof DrainArgsSchema>;
