// drover_drain_remaining_vms: set for each host in maintenance from the latest snapshot by the plan upkeep,
// and cleared once no host is in maintenance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostStateStore } from '../../src/collector/host-state-store.js';
import { startService, type RunningService } from '../../src/service/main.js';
import { cleanPrefix, connectRedis, serviceEnv, uniquePrefix } from '../support/redis.js';
import { writeFixture, type Fixture } from './service-fixture.js';

let fixture: Fixture;
let svc: RunningService;

async function gauge(host: string): Promise<number | undefined> {
  const metric = svc.metrics.registry.getSingleMetric('drover_drain_remaining_vms');
  const values = metric ? (await metric.get()).values : [];
  return values.find((v) => v.labels.host === host)?.value;
}

beforeAll(async () => {
  fixture = await writeFixture(uniquePrefix('drain-gauges'), {
    schedules: { rebalance: { enabled: false }, plans: { intervalS: 3600 } },
  });
  svc = await startService(await fixture.load(), { env: serviceEnv() });
  const deadline = Date.now() + 20_000;
  while (!(await svc.service.latestSnapshot())) {
    if (Date.now() > deadline) throw new Error('no snapshot within 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}, 60_000);

afterAll(async () => {
  await svc?.stop('test done');
  const redis = connectRedis();
  await cleanPrefix(redis, fixture.prefix);
  redis.disconnect();
  await fixture.cleanup();
});

describe('drain gauges', () => {
  it('counts the VMs left on a host in maintenance, and clears the series when none is', async () => {
    const states = new HostStateStore(svc.redis.redis, fixture.prefix);
    await states.set('kvm-01', 'maintenance');
    await svc.service.trackPlans();
    const snapshot = await svc.service.latestSnapshot();
    const onHost = snapshot?.vms.filter((v) => v.host === 'kvm-01').length;
    expect(onHost).toBe(6);
    expect(await gauge('kvm-01')).toBe(onHost);
    expect(await gauge('kvm-02')).toBeUndefined();

    await states.set('kvm-01', 'active');
    await svc.service.trackPlans();
    expect(await gauge('kvm-01')).toBeUndefined();
  });
});
