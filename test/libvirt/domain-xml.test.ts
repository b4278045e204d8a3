import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/domain/errors.js';
import { HYPERVISOR_ERROR_CODES } from '../../src/hypervisor/hypervisor.js';
import {
  dirtyRateOf,
  hostCpuModel,
  LibvirtHypervisor,
  parseDomainXml,
  parseHostConfigs,
  toHypervisorError,
  toJobStats,
  vmStateOf,
} from '../../src/hypervisor/libvirt/index.js';
import { LibvirtConnectionError, LibvirtError, LibvirtTimeoutError } from '../../src/libvirt/errors.js';

const XML = `<domain type='kvm' id='3'>
  <name>db-7</name>
  <metadata>
    <drover:labels xmlns:drover="https://drover.dev/xmlns/labels/1"><drover:label name="app">db</drover:label><drover:label name="tier">a&amp;b</drover:label></drover:labels>
    <other:labels xmlns:other="urn:other"><other:label name="app">ignored</other:label></other:labels>
  </metadata>
  <memory unit='KiB'>16777216</memory>
  <currentMemory unit='KiB'>8388608</currentMemory>
  <vcpu placement='static'>8</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>Cascadelake-Server</model></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/db-7.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='rbd' name='pool/db-7-data'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
  </devices>
</domain>`;

describe('domain XML facts', () => {
  it('reads memory, vCPUs, CPU model, disks and drover labels', () => {
    const f = parseDomainXml(XML);
    expect(f).toMatchObject({
      type: 'kvm',
      memMiB: 16384,
      vcpus: 8,
      cpuModel: 'Cascadelake-Server',
      arch: 'x86_64',
      machine: 'pc-q35-7.2',
    });
    expect(f.emulator).toBe('/usr/bin/qemu-system-x86_64');
    expect(f.cpuXml).toMatch(/^<cpu mode='custom'[\s\S]*<\/cpu>$/);
    expect(f.disks).toEqual([
      {
        target: 'vda',
        source: '/var/lib/libvirt/images/db-7.qcow2',
        type: 'file',
        format: 'qcow2',
        shareable: false,
      },
      { target: 'vdb', source: 'pool/db-7-data', type: 'network', format: 'raw', shareable: false },
    ]);
    expect(f.labels).toEqual({ app: 'db', tier: 'a&b' });
  });

  it('handles memory units and a domain without CPU, disks or labels', () => {
    const f = parseDomainXml(
      "<domain type='qemu'><name>x</name><memory unit='GiB'>2</memory><vcpu>1</vcpu><devices></devices></domain>",
    );
    expect(f).toMatchObject({ memMiB: 2048, vcpus: 1, cpuModel: null, cpuXml: null, disks: [], labels: {} });
  });

  it('reads the host CPU model from capabilities', () => {
    expect(
      hostCpuModel(
        '<capabilities><host><uuid>u</uuid><cpu><arch>x86_64</arch><model>EPYC-Rome</model></cpu></host><guest><cpu><model>no</model></cpu></guest></capabilities>',
      ),
    ).toBe('EPYC-Rome');
  });
});

describe('libvirt -> drover mappings', () => {
  it.each([
    [1, 'running'],
    [2, 'running'],
    [3, 'paused'],
    [5, 'shutoff'],
    [6, 'shutoff'],
    [7, 'paused'],
  ])('domain state %i is %s', (state, expected) => {
    expect(vmStateOf(state)).toBe(expected);
  });

  it('maps job stats with 0-based iterations and keeps libvirt units', () => {
    const s = toJobStats(
      'active',
      {
        memory_iteration: 3,
        memory_dirty_rate: 2560n,
        memory_page_size: 4096n,
        memory_bps: 1048576n,
        time_elapsed: 1500n,
      },
      false,
    );
    expect(s).toMatchObject({
      type: 'active',
      memory_iteration: 2,
      memory_dirty_rate: 2560,
      memory_page_size: 4096,
      memory_bps: 1048576,
      time_elapsed: 1500,
      postcopy: false,
    });
    expect(toJobStats('completed', {}, false)).toMatchObject({
      memory_iteration: 0,
      memory_page_size: 4096,
      downtime: 0,
    });
    expect(toJobStats('active', { memory_postcopy_requests: 4n }, false).postcopy).toBe(true);
  });

  it('reads dirty-rate stats', () => {
    expect(
      dirtyRateOf(
        { 'dirtyrate.calc_status': 2, 'dirtyrate.megabytes_per_second': 48n, 'dirtyrate.calc_period': 1 },
        1000,
      ),
    ).toEqual({
      status: 'measured',
      dirtyMiBps: 48,
      startedAt: 1000,
      windowS: 1,
    });
    expect(dirtyRateOf({ 'dirtyrate.calc_status': 1 }, 5).status).toBe('measuring');
    expect(dirtyRateOf({}, null)).toEqual({
      status: 'none',
      dirtyMiBps: null,
      startedAt: null,
      windowS: null,
    });
  });

  it('turns client errors into HypervisorErrors with stable codes and the cause kept', () => {
    const noDomain = new LibvirtError({
      virCode: 42,
      virDomain: 10,
      level: 2,
      message: 'Domain not found',
      procedure: 'X',
    });
    expect(toHypervisorError(noDomain, 'jobStats')).toMatchObject({
      code: HYPERVISOR_ERROR_CODES.noDomain,
      cause: noDomain,
    });
    expect(toHypervisorError(new LibvirtTimeoutError('X', 5), 'a').code).toBe(
      HYPERVISOR_ERROR_CODES.hostUnreachable,
    );
    expect(toHypervisorError(new LibvirtConnectionError('libvirt_peer_dead', 'gone'), 'a').code).toBe(
      HYPERVISOR_ERROR_CODES.hostUnreachable,
    );
    const invalid = new LibvirtError({
      virCode: 55,
      virDomain: 10,
      level: 2,
      message: 'no job',
      procedure: 'DOMAIN_ABORT_JOB',
    });
    expect(toHypervisorError(invalid, 'abortJob').code).toBe(HYPERVISOR_ERROR_CODES.operationInvalid);
    const unsafe = new LibvirtError({
      virCode: 81,
      virDomain: 10,
      level: 2,
      message: 'unsafe',
      procedure: 'P',
    });
    expect(toHypervisorError(unsafe, 'migrate').code).toBe(HYPERVISOR_ERROR_CODES.migrateUnsafe);
    expect(toHypervisorError(new Error('boom'), 'x').code).toBe(HYPERVISOR_ERROR_CODES.operationFailed);
  });
});

describe('libvirt host configuration', () => {
  it('accepts a host list and rejects bad entries naming each field', () => {
    expect(
      parseHostConfigs([
        { id: 'kvm-01', uri: 'qemu+tls://kvm-01/system', bandwidthMiBps: 1150, labels: { rack: 'r1' } },
      ]),
    ).toHaveLength(1);
    let err: unknown;
    try {
      parseHostConfigs([
        { id: 'kvm-01', uri: 'qemu+ftp://kvm-01/system' },
        { id: 'kvm-01', uri: 'qemu+ssh://kvm-02/system', bandwidthMiBps: -1, extra: true },
      ]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    const paths = (err as ValidationError).issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['[0].uri', '[1].bandwidthMiBps', '[1].extra']));
    expect(String(err)).toMatch(/transport/);
  });

  it('reports a duplicate host id', () => {
    expect(() =>
      parseHostConfigs([
        { id: 'a', uri: 'qemu:///system' },
        { id: 'a', uri: 'qemu:///system' },
      ]),
    ).toThrow(/\[1\]\.id: duplicate host id "a"/);
  });

  it('refuses unknown hosts with the no_host code before connecting anywhere', async () => {
    const hv = new LibvirtHypervisor([{ id: 'a', uri: 'qemu+unix:///system?socket=/nonexistent/sock' }]);
    await expect(hv.sampleHost('b')).rejects.toMatchObject({ code: HYPERVISOR_ERROR_CODES.noHost });
    await expect(hv.sampleHost('a')).rejects.toMatchObject({ code: HYPERVISOR_ERROR_CODES.hostUnreachable });
    await hv.close();
  });
});
