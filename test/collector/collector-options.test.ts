import { describe, expect, it } from 'vitest';
import { memberTtlMs, parseCollectorOptions, staleAfterMs } from '../../src/collector/collector-options.js';
import { ValidationError } from '../../src/domain/errors.js';

describe('collector options', () => {
  it('fills defaults, nested ones included', () => {
    const o = parseCollectorOptions({});
    expect(o.intervalS).toBe(30);
    expect(o.dirtyRate).toEqual({ enabled: true, windowS: 5, maxPerHost: 2, remeasureS: 300 });
    expect(o.smoothing.holdS).toBe(120);
    expect(staleAfterMs(o)).toBe(65_000);
    expect(memberTtlMs(o)).toBe(30_000);
    expect(staleAfterMs(parseCollectorOptions({ staleAfterS: 10 }))).toBe(10_000);
  });

  it('names every bad field with its path', () => {
    let err: unknown;
    try {
      parseCollectorOptions(
        { intervalS: -1, dirtyRate: { windowS: 90, maxPerHost: 0 }, smoothing: { colour: 'red' } },
        'drover.yaml: collector',
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const paths = (err as ValidationError).issues.map((i) => i.path).sort();
    expect(paths).toEqual(['dirtyRate.maxPerHost', 'dirtyRate.windowS', 'intervalS', 'smoothing.colour']);
    expect((err as ValidationError).message).toContain(
      'drover.yaml: collector: dirtyRate.windowS: expected a whole number of seconds from 1 to 60, got 90',
    );
  });
});
