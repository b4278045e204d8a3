// When a migration hands its slots over ahead, and which steps may take them (src/executor/hand-over.ts).
import { describe, expect, it } from 'vitest';
import { handOverAtMs, takesOverAhead } from '../../src/executor/hand-over.js';
import { step } from './support/sim-cluster.js';

const predicted = (durationS: number, dirtyMiBps?: number) => ({
  converges: true,
  durationS,
  downtimeMs: 50,
  transferMiB: 1000,
  ...(dirtyMiBps === undefined ? {} : { dirtyMiBps }),
});

describe('handing slots over ahead', () => {
  it.each([
    // durationS, setupS, hands over at (ms after its start), why
    [8, 1, 7000, 'one set-up before its predicted end'],
    [1.5, 1, 1000, 'never before its own set-up is over'],
    [10, 1, 9000, 'a set-up of 10 % of it'],
    [10.5, 1, null, 'a set-up under 10 % of it: lost in the transfer'],
    [8, 0, null, 'no set-up to overlap'],
  ])('a migration predicted %d s with a %d s set-up hands over at %s ms (%s)', (d, setupS, at, _why) => {
    expect(handOverAtMs(step('v', { predicted: predicted(d) }), 0, setupS)).toBe(at);
  });

  it.each([
    // dirtyMiBps, link, concurrency, takes over
    [1, 1192, 1, true],
    [23.8, 1192, 1, true],
    [24, 1192, 1, false],
    [7.9, 1192, 3, true],
    [8, 1192, 3, false],
    [1, 119, 1, true],
    [3, 119, 1, false],
  ])('a guest writing %d MiB/s on a %d MiB/s link at %d at once takes over: %s', (dirty, link, c, yes) => {
    expect(takesOverAhead(step('v', { predicted: predicted(5, dirty), concurrency: c }), link)).toBe(yes);
  });

  it('no dirty rate, no link, or not a live migration: it waits its turn', () => {
    expect(takesOverAhead(step('v', { predicted: predicted(5) }), 1192)).toBe(false);
    expect(takesOverAhead(step('v', { predicted: predicted(5, 1) }), null)).toBe(false);
    expect(takesOverAhead(step('v', { predicted: predicted(5, 1), kind: 'block' }), 1192)).toBe(false);
  });
});
