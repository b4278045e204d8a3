// Concurrency slots on a real Redis: the configured limits, a step's own outbound limit (Step.concurrency),
// which binds both ways (it starts only when few enough leave its source, and nothing starts from that source
// that would make more while it runs), the link share, which counts only the holders that send, and handing
// slots over ahead to a step held until the holder it follows has gone.
import type { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SlotStore } from '../../src/executor/slot-store.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

const limits = { perHostOutbound: 4, perHostInbound: 4, cluster: 8 };
const claim = (vmId: string, from = 'a', to = 'b') => ({ vmId, from, to });

describe('SlotStore', () => {
  let redis: Redis;
  let prefix: string;
  let slots: SlotStore;

  beforeEach(() => {
    redis = connectRedis();
    prefix = uniquePrefix('slots');
    slots = new SlotStore(redis, prefix, 60_000);
  });
  afterEach(async () => {
    await cleanPrefix(redis, prefix);
    redis.disconnect();
  });

  it('takes up to the configured outbound limit', async () => {
    for (const v of ['v1', 'v2', 'v3', 'v4']) expect((await slots.acquire(claim(v), limits)).ok).toBe(true);
    expect(await slots.acquire(claim('v5'), limits)).toEqual({ ok: false, full: 'outbound', count: 4 });
  });

  it('a step limited to 1 runs alone: it waits for the others, and blocks new ones while it runs', async () => {
    expect((await slots.acquire(claim('light'), limits, false, 4)).ok).toBe(true);
    expect((await slots.acquire(claim('heavy'), limits, false, 1)).ok).toBe(false);
    await slots.release(claim('light'));
    expect((await slots.acquire(claim('heavy'), limits, false, 1)).ok).toBe(true);
    // While it runs, nothing else leaves host a, whatever its own limit...
    expect(await slots.acquire(claim('light2'), limits, false, 4)).toEqual({
      ok: false,
      full: 'outbound',
      count: 1,
    });
    expect((await slots.acquire(claim('plain'), limits)).ok).toBe(false);
    // ...but other hosts are not affected.
    expect((await slots.acquire(claim('elsewhere', 'c', 'd'), limits, false, 4)).ok).toBe(true);
    await slots.release(claim('heavy'));
    expect((await slots.acquire(claim('light2'), limits, false, 4)).ok).toBe(true);
  });

  it('a step limit above the configured limit does not raise it', async () => {
    const two = { ...limits, perHostOutbound: 2 };
    expect((await slots.acquire(claim('v1'), two, false, 6)).ok).toBe(true);
    expect((await slots.acquire(claim('v2'), two, false, 6)).ok).toBe(true);
    expect((await slots.acquire(claim('v3'), two, false, 6)).ok).toBe(false);
  });

  it('steps limited to 2 pair up, and a third waits', async () => {
    expect((await slots.acquire(claim('v1'), limits, false, 2)).ok).toBe(true);
    expect((await slots.acquire(claim('v2'), limits, false, 2)).ok).toBe(true);
    expect((await slots.acquire(claim('v3'), limits, false, 4)).ok).toBe(false);
    expect(await slots.holders('out', 'a')).toHaveLength(2);
  });

  it('the link share counts only holders that send: one still in its set-up takes no share', async () => {
    for (const v of ['v1', 'v2', 'v3']) expect((await slots.acquire(claim(v), limits)).ok).toBe(true);
    // Nobody sends yet: each would have the whole link.
    expect(await slots.renew(claim('v1'), false)).toEqual({ outbound: 1, inbound: 1, held: false });
    // v1 and v2 send; v3 is still setting up: it counts both of them, they count each other only.
    expect(await slots.renew(claim('v1'), true)).toEqual({ outbound: 1, inbound: 1, held: false });
    expect(await slots.renew(claim('v2'), true)).toEqual({ outbound: 2, inbound: 2, held: false });
    expect(await slots.renew(claim('v1'), true)).toEqual({ outbound: 2, inbound: 2, held: false });
    expect(await slots.renew(claim('v3'), false)).toEqual({ outbound: 3, inbound: 3, held: false });
    // Once v3 sends, all three share; a sender on other hosts counts on neither link.
    expect((await slots.acquire(claim('far', 'c', 'd'), limits)).ok).toBe(true);
    await slots.renew(claim('far', 'c', 'd'), true);
    expect(await slots.renew(claim('v3'), true)).toEqual({ outbound: 3, inbound: 3, held: false });
    expect(await slots.renew(claim('v1'), true)).toEqual({ outbound: 3, inbound: 3, held: false });
    // A released migration no longer counts.
    await slots.release(claim('v2'));
    expect(await slots.renew(claim('v1'), true)).toEqual({ outbound: 2, inbound: 2, held: false });
  });

  it('adoption (force) takes the slot whatever the limits', async () => {
    expect((await slots.acquire(claim('heavy'), limits, false, 1)).ok).toBe(true);
    expect((await slots.acquire(claim('adopted'), limits, true)).ok).toBe(true);
  });

  it('a holder marked ready hands its slots over to one step, held until the holder has gone', async () => {
    expect((await slots.acquire(claim('alone'), limits, false, 1)).ok).toBe(true);
    await slots.renew(claim('alone'), true);
    // Not ready yet: the next step waits, even if it may take over ahead.
    expect((await slots.acquire(claim('next'), limits, false, 1, true)).ok).toBe(false);
    await slots.renew(claim('alone'), true, true);
    // Ready: a step that may not take over ahead still waits; one that may takes the slots, held.
    expect((await slots.acquire(claim('plain'), limits, false, 1)).ok).toBe(false);
    expect(await slots.acquire(claim('next'), limits, false, 1, true)).toMatchObject({
      ok: true,
      held: true,
    });
    // One follower per holder.
    expect((await slots.acquire(claim('third'), limits, false, 1, true)).ok).toBe(false);
    // Held: it says it sends, yet the holder keeps the link to itself.
    expect(await slots.renew(claim('next'), true)).toEqual({ outbound: 2, inbound: 2, held: true });
    expect(await slots.renew(claim('alone'), true)).toEqual({ outbound: 1, inbound: 1, held: false });
    // The holder has gone: the follower is let go and takes the link; it now leads on that source.
    await slots.release(claim('alone'));
    expect(await slots.renew(claim('next'), true)).toEqual({ outbound: 1, inbound: 1, held: false });
    expect((await slots.acquire(claim('third'), limits, false, 1, true)).ok).toBe(false);
    await slots.renew(claim('next'), true, true);
    expect(await slots.acquire(claim('third'), limits, false, 1, true)).toMatchObject({
      ok: true,
      held: true,
    });
  });

  it('a step takes over ahead only within the limits left without the holder it follows', async () => {
    const one = { ...limits, cluster: 2 };
    expect((await slots.acquire(claim('x', 'c', 'd'), one)).ok).toBe(true);
    expect((await slots.acquire(claim('alone'), one, false, 1)).ok).toBe(true);
    await slots.renew(claim('alone'), true, true);
    // The cluster holds 2 of 2: without 'alone' it would hold 1, so one more may come ahead...
    expect(await slots.acquire(claim('next'), one, false, 1, true)).toMatchObject({ ok: true, held: true });
    await slots.release(claim('next'));
    // ...but a step whose destination is full even without 'alone' may not.
    const oneIn = { ...limits, perHostInbound: 1 };
    expect((await slots.acquire(claim('y', 'c', 'e'), oneIn)).ok).toBe(true);
    expect((await slots.acquire(claim('toE', 'a', 'e'), oneIn, false, 1, true)).ok).toBe(false);
  });
});
