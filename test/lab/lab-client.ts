// Helpers for tests and benchmarks that run against drover's libvirt lab (test/lab/lab.sh): where the lab
// hosts are, guests with a given size and dirtying workload, their heartbeat, and faults (cut a host's link,
// stop, pause or kill its daemon). The lab project's global setup brings the lab up; these helpers only use it.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LibvirtHypervisor, type LibvirtHypervisorOptions } from '../../src/hypervisor/libvirt/index.js';
import { isNoDomain } from '../../src/libvirt/errors.js';
import { LibvirtClient, uuidToString, type ConnectOptions } from '../../src/libvirt/libvirt-client.js';
import { DomainState, UndefineFlags } from '../../src/libvirt/remote-protocol.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '../..');
export const LAB_SCRIPT = join(here, 'lab.sh');

/** The lab's directory: $LAB_DIR or <repo>/.lab. */
export function labDir(): string {
  return resolve(process.env.LAB_DIR ?? join(REPO_ROOT, '.lab'));
}

export interface LabHost {
  /** `lab1`, `lab2`, ... (also the hostname inside its namespace) */
  id: string;
  /** Address on the lab's private link (inside the namespaces only). */
  ip: string;
  /** qemu+unix URI of its daemon's socket. */
  uri: string;
  socketPath: string;
  dir: string;
}

/** Runs lab.sh with the given arguments; rejects with its stderr on failure. */
export async function labCommand(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('bash', [LAB_SCRIPT, ...args], {
      env: { ...process.env, LAB_DIR: labDir() },
      maxBuffer: 4 << 20,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`lab.sh ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

/** True when lab.sh reports hosts (some may have a stopped daemon). */
export function labIsUp(): boolean {
  const list = join(labDir(), 'hosts.list');
  return existsSync(list) && readFileSync(list, 'utf8').trim() !== '';
}

export function labHosts(): LabHost[] {
  if (!labIsUp()) throw new Error(`the libvirt lab is not up (run: make lab-up; LAB_DIR=${labDir()})`);
  return readFileSync(join(labDir(), 'hosts.list'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((id) => {
      const dir = join(labDir(), 'hosts', id);
      const socketPath = join(dir, 'sock', 'libvirt-sock');
      return {
        id,
        ip: `10.77.0.${id.replace('lab', '')}`,
        uri: `qemu+unix:///system?socket=${socketPath}`,
        socketPath,
        dir,
      };
    });
}

export function labHost(id: string): LabHost {
  const host = labHosts().find((h) => h.id === id);
  if (!host) throw new Error(`no lab host ${id}`);
  return host;
}

/** Host configs for LibvirtHypervisor over the lab (`bandwidthMiBps` is what tests cap migrations at). */
export function labHostConfigs(
  bandwidthMiBps: number | null = 100,
): { id: string; uri: string; bandwidthMiBps: number | null; labels: Record<string, string> }[] {
  return labHosts().map((h) => ({ id: h.id, uri: h.uri, bandwidthMiBps, labels: { lab: 'true' } }));
}

/** A LibvirtHypervisor connected to every lab host (close it after the test). */
export function libvirtHypervisor(options: LibvirtHypervisorOptions = {}): LibvirtHypervisor {
  return new LibvirtHypervisor(labHostConfigs(), {
    callTimeoutMs: 15_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1_000,
    ...options,
  });
}

/** A raw client of one lab host's daemon. */
export function labClient(hostId: string, options: ConnectOptions = {}): Promise<LibvirtClient> {
  return LibvirtClient.connect(labHost(hostId).uri, { callTimeoutMs: 15_000, ...options });
}

export interface GuestSpec {
  name: string;
  /** Host to define (and start) it on; default the first lab host. */
  host?: string;
  /** Guest RAM (default 64). */
  memMiB?: number;
  /** MiB of RAM the guest keeps rewriting (0 / absent = idle guest). */
  mb?: number;
  /** Pages (4 KiB) per second it writes; 0 = as fast as it can. 256 pages/s = 1 MiB/s. */
  rate?: number;
  /** MiB the guest writes once at boot and then leaves alone (non-zero RAM that a migration must copy). */
  fillMiB?: number;
  /** More guest command-line words (test/lab/guest/guest.c), e.g. `burst=200`, `gap=800`, `raise=0`. */
  args?: string[];
  /** Start it after defining (default true). */
  start?: boolean;
  labels?: Record<string, string>;
  /** File-backed disks (the guest kernel ignores them; block migrations copy them). */
  disks?: GuestDisk[];
  /** A `<cpu>` element for the domain (default none: QEMU's default CPU). */
  cpuXml?: string;
}

export interface GuestDisk {
  /** Image path inside the host's namespace, e.g. /var/lib/libvirt/images/<pool dir>/disk.qcow2. */
  path: string;
  /** Image format (default qcow2). */
  format?: string;
  /** Guest device (default vda, vdb, ... in order). */
  target?: string;
}

function diskXml(disks: readonly GuestDisk[]): string {
  return disks
    .map(
      (d, i) =>
        `<disk type='file' device='disk'><driver name='qemu' type='${d.format ?? 'qcow2'}'/>` +
        `<source file='${d.path}'/><target dev='${d.target ?? `vd${String.fromCharCode(97 + i)}`}' bus='virtio'/></disk>`,
    )
    .join('\n    ');
}

export interface LabGuest {
  name: string;
  /** libvirt UUID = drover's VM id. */
  id: string;
  host: string;
  xml: string;
}

/** Domain XML for a lab guest (TCG, no disk: the guest kernel is booted directly). */
export function guestXml(spec: GuestSpec): string {
  const memMiB = spec.memMiB ?? 64;
  const args = [spec.mb ? `mb=${spec.mb} rate=${spec.rate ?? 0}` : 'idle'];
  if (spec.fillMiB) args.push(`fill=${spec.fillMiB}`);
  args.push(...(spec.args ?? []));
  const cmdline = args.join(' ');
  mkdirSync(join(labDir(), 'run'), { recursive: true });
  const labels = Object.entries(spec.labels ?? {})
    .map(([k, v]) => `<drover:label name="${k}">${v}</drover:label>`)
    .join('');
  return `<domain type='qemu'>
  <name>${spec.name}</name>
  <metadata><drover:labels xmlns:drover="https://drover.dev/xmlns/labels/1">${labels}</drover:labels></metadata>
  <memory unit='MiB'>${memMiB}</memory>
  <vcpu>1</vcpu>${
    spec.cpuXml
      ? `
  ${spec.cpuXml}`
      : ''
  }
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${join(labDir(), 'guest', 'guest.elf')}</kernel>
    <cmdline>${cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    ${diskXml(spec.disks ?? [])}
    <controller type='usb' model='none'/>
    <serial type='file'><source path='${join(labDir(), 'run', `${spec.name}.serial.log`)}' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;
}

/** Defines (and by default starts) a lab guest. Remove it with removeGuest(). */
export async function defineGuest(spec: GuestSpec): Promise<LabGuest> {
  const host = spec.host ?? labHosts()[0]?.id ?? 'lab1';
  const client = await labClient(host);
  try {
    const xml = guestXml(spec);
    const dom = await client.defineXml(xml);
    if (spec.start !== false) await client.create(dom);
    return { name: spec.name, id: uuidToString(dom.uuid), host, xml };
  } finally {
    await client.close();
  }
}

/** Destroys and undefines the guest on every lab host where it exists. */
export async function removeGuest(name: string): Promise<void> {
  for (const host of labHosts()) {
    let client: LibvirtClient;
    try {
      client = await labClient(host.id, { callTimeoutMs: 10_000 });
    } catch {
      continue; // that host's daemon is down; nothing to clean there
    }
    try {
      const dom = await client.lookupDomainByName(name);
      const { state } = await client.domainState(dom);
      if (state !== DomainState.SHUTOFF) await client.destroyDomain(dom).catch(() => undefined);
      await client.undefine(dom, UndefineFlags.KEEP_NVRAM).catch((err: unknown) => {
        if (!isNoDomain(err)) throw err;
      });
    } catch (err) {
      if (!isNoDomain(err)) throw err;
    } finally {
      await client.close();
    }
  }
}

export interface Heartbeat {
  /** Seconds since the guest booted. */
  seconds: number;
  /** Completed passes over its dirty region. */
  passes: number;
  /** Pages written. */
  pages: number;
}

/** Reads the guest's heartbeat words from its RAM (through that host's QEMU monitor). */
export async function heartbeat(hostId: string, vmName: string): Promise<Heartbeat> {
  const { stdout } = await run('virsh', [
    '-q',
    '-c',
    labHost(hostId).uri,
    'qemu-monitor-command',
    vmName,
    '--hmp',
    'xp /3wd 0x8000',
  ]);
  const words = stdout.trim().split(/\s+/);
  const [seconds, passes, pages] = words.slice(1, 4).map(Number);
  if (
    seconds === undefined ||
    passes === undefined ||
    pages === undefined ||
    [seconds, passes, pages].some(Number.isNaN)
  )
    throw new Error(`unexpected monitor output: ${stdout}`);
  return { seconds, passes, pages };
}

/**
 * Resolves with the heartbeat once its seconds counter advanced past the first reading, or rejects after
 * timeoutMs plus ten times what that first reading took: on a loaded machine the monitor answers slowly and
 * a TCG guest's clock runs slow alike, so the wait scales with what this machine shows now.
 */
export async function heartbeatAdvances(
  hostId: string,
  vmName: string,
  timeoutMs = 5_000,
): Promise<Heartbeat> {
  const asked = Date.now();
  const first = await heartbeat(hostId, vmName);
  const deadline = Date.now() + timeoutMs + 10 * (Date.now() - asked);
  for (;;) {
    await sleep(250);
    const now = await heartbeat(hostId, vmName);
    if (now.seconds > first.seconds) return now;
    if (Date.now() > deadline)
      throw new Error(`${vmName} on ${hostId}: heartbeat stuck at ${first.seconds} s`);
  }
}

/**
 * Runs a command inside a lab host's namespaces (its own /var, so its own /var/lib/libvirt/images), e.g.
 * qemu-img on that host's images. Rejects with stderr on failure.
 */
export async function labExec(hostId: string, argv: readonly string[]): Promise<string> {
  const holder = readFileSync(join(labHost(hostId).dir, 'holder.pid'), 'utf8').trim();
  try {
    const { stdout } = await run('nsenter', ['-t', holder, '-m', '-u', '-n', ...argv], {
      maxBuffer: 4 << 20,
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${hostId}: ${argv.join(' ')} failed: ${e.stderr?.trim() || e.message}`, { cause: err });
  }
}

export const cutLink = (hostId: string) => labCommand('link-down', hostId);
export const restoreLink = (hostId: string) => labCommand('link-up', hostId);
export const resetMigrationStreams = (hostId: string) => labCommand('reset-migration', hostId);
export const stopDaemon = (hostId: string) => labCommand('daemon-stop', hostId);
export const killDaemon = (hostId: string) => labCommand('daemon-kill', hostId);
export const startDaemon = (hostId: string) => labCommand('daemon-start', hostId);
export const pauseDaemon = (hostId: string) => labCommand('daemon-pause', hostId);
export const resumeDaemon = (hostId: string) => labCommand('daemon-resume', hostId);

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns a value other than undefined, or rejects after timeoutMs. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})` : ''}`,
      );
    await sleep(everyMs);
  }
}

/** A name unique to this run, for guests. */
/** Presses a key on the guest's keyboard: a guest started with `raise=` switches its dirty rate. */
export async function pressKey(hostId: string, vmName: string): Promise<void> {
  await run('virsh', ['-q', '-c', labHost(hostId).uri, 'qemu-monitor-command', vmName, '--hmp', 'sendkey a']);
}

export function guestName(prefix: string): string {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
}
