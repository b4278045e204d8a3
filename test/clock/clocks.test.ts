// The clocks: virtual (deterministic), scaled and system.
import { describe, expect, it } from 'vitest';
import { errorCode } from '../../src/domain/errors.js';
import { ScaledClock, SystemClock, VirtualClock } from '../../src/clock/clocks.js';

describe('VirtualClock', () => {
  it('stands still until advanced, then fires due timers in time order', async () => {
    const clock = new VirtualClock(1_000);
    const fired: string[] = [];
    void clock.sleep(300).then(() => fired.push(`b@${clock.now()}`));
    void clock.sleep(100).then(() => fired.push(`a@${clock.now()}`));
    void clock.sleep(100).then(() => fired.push(`a2@${clock.now()}`));
    void clock.sleep(900).then(() => fired.push(`c@${clock.now()}`));
    expect(clock.now()).toBe(1_000);
    expect(clock.pendingTimers()).toBe(4);
    await clock.advance(500);
    expect(fired).toEqual(['a@1100', 'a2@1100', 'b@1300']);
    expect(clock.now()).toBe(1_500);
    expect(clock.nextTimerAt()).toBe(1_900);
  });

  it('lets chains of sleeps run inside one advance', async () => {
    const clock = new VirtualClock(0);
    const stamps: number[] = [];
    const chain = (async () => {
      for (let i = 0; i < 5; i++) {
        await clock.sleep(10);
        await Promise.resolve();
        stamps.push(clock.now());
      }
    })();
    await clock.advance(35);
    expect(stamps).toEqual([10, 20, 30]);
    await clock.advance(100);
    await chain;
    expect(stamps).toEqual([10, 20, 30, 40, 50]);
  });

  it('aborting a sleep rejects with the signal reason and removes the timer', async () => {
    const clock = new VirtualClock();
    const ctrl = new AbortController();
    const sleeping = clock.sleep(1000, ctrl.signal);
    ctrl.abort(new Error('stop'));
    await expect(sleeping).rejects.toThrow('stop');
    expect(clock.pendingTimers()).toBe(0);
    await expect(clock.sleep(1, ctrl.signal)).rejects.toThrow('stop');
  });

  it('runUntil runs a ten-minute program in a moment of real time', async () => {
    const clock = new VirtualClock(0);
    const program = async () => {
      let ticks = 0;
      while (clock.now() < 600_000) {
        await clock.sleep(100);
        ticks++;
      }
      return ticks;
    };
    const realStart = Date.now();
    expect(await clock.runUntil(program())).toBe(6000);
    expect(clock.now()).toBe(600_000);
    expect(Date.now() - realStart).toBeLessThan(20_000);
  });

  it('runUntil reports a stalled program and a time limit', async () => {
    const clock = new VirtualClock(0);
    const never = new Promise<void>(() => undefined);
    expect(errorCode(await clock.runUntil(never).catch((e: unknown) => e))).toBe('clock_stalled');
    const slow = clock.sleep(10_000);
    expect(errorCode(await clock.runUntil(slow, { maxMs: 5_000 }).catch((e: unknown) => e))).toBe(
      'clock_limit',
    );
    expect(clock.now()).toBe(5_000);
    await clock.runUntil(slow);
    expect(clock.now()).toBe(10_000);
  });

  it('runUntil passes a rejection through', async () => {
    const clock = new VirtualClock(0);
    const failing = (async () => {
      await clock.sleep(50);
      throw new Error('boom');
    })();
    await expect(clock.runUntil(failing)).rejects.toThrow('boom');
    expect(clock.now()).toBe(50);
  });

  it('refuses to be driven twice at once; runAll drains every timer', async () => {
    const clock = new VirtualClock(0);
    void clock.sleep(10);
    const first = clock.advance(5);
    await expect(clock.advance(5)).rejects.toMatchObject({ code: 'clock_busy' });
    await first;
    void clock.sleep(1000).then(() => clock.sleep(1000));
    await clock.runAll();
    expect(clock.pendingTimers()).toBe(0);
    expect(clock.now()).toBe(2005);
  });

  it('autoAdvance drives code that cannot be wrapped', async () => {
    const clock = new VirtualClock(0);
    const stop = clock.autoAdvance();
    try {
      await clock.sleep(60_000);
      await clock.sleep(60_000);
      expect(clock.now()).toBe(120_000);
    } finally {
      stop();
    }
  });
});

describe('ScaledClock and SystemClock', () => {
  it('a scaled clock runs faster than real time', async () => {
    const clock = new ScaledClock(100, 0);
    const realStart = Date.now();
    await clock.sleep(2000);
    const realMs = Date.now() - realStart;
    expect(clock.now()).toBeGreaterThanOrEqual(1900);
    expect(realMs).toBeLessThan(1500);
    expect(() => new ScaledClock(0)).toThrow(/positive/);
  });

  it('the system clock tells real time and its sleeps can be aborted', async () => {
    const clock = new SystemClock();
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(1000);
    const ctrl = new AbortController();
    const sleeping = clock.sleep(60_000, ctrl.signal);
    ctrl.abort(new Error('cancelled'));
    await expect(sleeping).rejects.toThrow('cancelled');
  });
});
