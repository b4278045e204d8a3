// One executor worker in its own process, against the libvirt lab: the lab tests kill it with SIGKILL in
// the middle of a migration. Arguments: <redis url> <key prefix> <link MiB/s>. Prints `ready` once started.
import { Redis } from 'ioredis';
import { Executor } from '../../../src/executor/executor.js';
import { parseExecutorOptions } from '../../../src/executor/executor-options.js';
import { LibvirtHypervisor } from '../../../src/hypervisor/libvirt/index.js';
import { labHostConfigs } from '../../lab/lab-client.js';

const [redisUrl, prefix, link] = process.argv.slice(2);
if (!redisUrl || !prefix) {
  process.stderr.write('usage: worker-process.ts <redis url> <prefix> [link MiB/s]\n');
  process.exit(2);
}
const hypervisor = new LibvirtHypervisor(labHostConfigs(Number(link ?? 10)), { callTimeoutMs: 15_000 });
const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
const executor = new Executor({ redis, hypervisor, options: parseExecutorOptions({ prefix }) });
executor.startWorkers();
process.stdout.write('ready\n');
