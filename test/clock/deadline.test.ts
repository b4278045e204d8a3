// withDeadline: the one race between a call and its deadline, on any Clock.
import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../../src/clock/clocks.js';
import { withDeadline } from '../../src/clock/deadline.js';

const expired = (): Error => new Error('too late');

describe('withDeadline', () => {
  it('rejects with the caller’s error once the deadline passes on the clock, not before', async () => {
    const clock = new VirtualClock(0);
    const never = new Promise<number>(() => undefined);
    let settled: unknown = 'pending';
    const call = withDeadline(clock, 500, never, expired).then(
      (v) => (settled = v),
      (e: Error) => (settled = e.message),
    );
    await clock.advance(499);
    expect(settled).toBe('pending');
    await clock.advance(1);
    await call;
    expect(settled).toBe('too late');
  });

  it('returns the work’s value when it settles first and leaves no timer behind', async () => {
    const clock = new VirtualClock(0);
    const value = await withDeadline(clock, 500, Promise.resolve(42), expired);
    expect(value).toBe(42);
    expect(clock.pendingTimers()).toBe(0);
    await expect(withDeadline(clock, 500, Promise.reject(new Error('refused')), expired)).rejects.toThrow(
      'refused',
    );
    expect(clock.pendingTimers()).toBe(0);
  });

  it('drops a late rejection of abandoned work instead of leaving it unhandled', async () => {
    const clock = new VirtualClock(0);
    let fail!: (e: Error) => void;
    const work = new Promise<number>((_resolve, reject) => (fail = reject));
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const outcome = expect(withDeadline(clock, 100, work, expired)).rejects.toThrow('too late');
      await clock.advance(100);
      await outcome;
      fail(new Error('late failure'));
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
