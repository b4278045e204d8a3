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
  toMigrationJob,
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

// The shapes of libvirt's formatdomain examples as `virsh dumpxml` prints them for a running guest.
const FULL = `<domain type='kvm' id='12' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web-1</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <title>Web 1</title>
  <description>front end &lt;prod&gt;</description>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
    <app1:foo xmlns:app1="http://app1.org/app1/">
      <cpu mode='custom'><model>Opteron_G1</model></cpu>
      <vcpu>64</vcpu>
      <devices><disk type='file' device='disk'><source file='/not/a/disk.img'/><target dev='vdz'/></disk></devices>
    </app1:foo>
    <lbl:labels xmlns:lbl="https://drover.dev/xmlns/labels/1">
      <lbl:label name="app">web</lbl:label>
      <lbl:label name="owner &lt;ops&gt;">o&apos;brien &amp; co</lbl:label>
    </lbl:labels>
  </metadata>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static' current='2'>8</vcpu>
  <vcpus>
    <vcpu id='0' enabled='yes' hotpluggable='no' order='1'/>
    <vcpu id='1' enabled='yes' hotpluggable='yes' order='2'/>
    <vcpu id='2' enabled='no' hotpluggable='yes'/>
  </vcpus>
  <resource><partition>/machine</partition></resource>
  <os>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>Skylake-Client-IBRS</model>
    <vendor>Intel</vendor>
    <topology sockets='1' dies='1' clusters='1' cores='4' threads='2'/>
    <feature policy='require' name='ss'/>
    <feature policy='require' name='vmx'/>
    <feature policy='disable' name='hle'/>
    <feature policy='disable' name='rtm'/>
  </cpu>
  <clock offset='utc'/>
  <devices>
    <emulator>/usr/libexec/qemu-kvm</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/libvirt/images/web-1.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' io='native'/>
      <source dev='/dev/mapper/vg0-web1data'/>
      <target dev='vdb' bus='virtio'/>
      <shareable/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <auth username='libvirt'><secret type='ceph' usage='client.libvirt'/></auth>
      <source protocol='rbd' name='rbd-pool/web-1-logs'>
        <host name='mon1.example' port='6789'/>
        <host name='mon2.example' port='6789'/>
      </source>
      <target dev='vdc' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='scratch' volume='web-1-scratch.img'/>
      <target dev='vdd' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'><source network='default'/><model type='virtio'/></interface>
  </devices>
  <qemu:commandline><qemu:arg value='-newarg'/></qemu:commandline>
</domain>`;

describe('domain XML facts', () => {
  it('reads memory, vCPUs, CPU model, disks and drover labels', () => {
    const f = parseDomainXml(XML);
    expect(f).toMatchObject({
      type: 'kvm',
      memMiB: 16384,
      vcpus: 8,
      maxVcpus: 8,
      cpuModel: 'Cascadelake-Server',
      arch: 'x86_64',
      machine: 'pc-q35-7.2',
    });
    expect(f.emulator).toBe('/usr/bin/qemu-system-x86_64');
    // The <cpu> element is written back from the parsed tree: same element, attributes and model.
    expect(f.cpuXml).toMatch(/^<cpu mode="custom" match="exact" check="partial">[\s\S]*<\/cpu>$/);
    expect(parseDomainXml(`<domain>${f.cpuXml}</domain>`).cpuModel).toBe('Cascadelake-Server');
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

  it('reads a full libvirt domain: foreign metadata, current vs maximum vCPUs, every disk kind', () => {
    const f = parseDomainXml(FULL);
    expect(f).toMatchObject({
      type: 'kvm',
      memMiB: 4096,
      vcpus: 2,
      maxVcpus: 8,
      cpuModel: 'Skylake-Client-IBRS',
      arch: 'x86_64',
      machine: 'pc-q35-8.2',
      emulator: '/usr/libexec/qemu-kvm',
    });
    // Only the domain's own elements count: the <cpu>, <vcpu> and <disk> inside another application's
    // metadata are not the domain's, and a disk's backing chain has sources of its own.
    expect(f.disks).toEqual([
      {
        target: 'vda',
        source: '/var/lib/libvirt/images/web-1.qcow2',
        type: 'file',
        format: 'qcow2',
        shareable: false,
      },
      { target: 'vdb', source: '/dev/mapper/vg0-web1data', type: 'block', format: 'raw', shareable: true },
      { target: 'vdc', source: 'rbd-pool/web-1-logs', type: 'network', format: 'raw', shareable: false },
      { target: 'vdd', source: 'web-1-scratch.img', type: 'volume', format: 'raw', shareable: false },
    ]);
    expect(f.labels).toEqual({ app: 'web', 'owner <ops>': "o'brien & co" });
  });

  it('writes the custom CPU back with its vendor, topology and every feature and policy', () => {
    const f = parseDomainXml(FULL);
    const cpu = f.cpuXml ?? '';
    expect(cpu).toMatch(/^<cpu mode="custom" match="exact" check="full">/);
    expect(cpu).toContain('<model fallback="forbid">Skylake-Client-IBRS</model>');
    expect(cpu).toContain('<vendor>Intel</vendor>');
    expect(cpu).toContain('<topology sockets="1" dies="1" clusters="1" cores="4" threads="2"/>');
    for (const feature of [
      '<feature policy="require" name="ss"/>',
      '<feature policy="require" name="vmx"/>',
      '<feature policy="disable" name="hle"/>',
      '<feature policy="disable" name="rtm"/>',
    ])
      expect(cpu).toContain(feature);
    expect(cpu).not.toContain('Opteron');
  });

  it.each([
    ["<vcpu placement='static' current='1'>4</vcpu>", 1, 4],
    ["<vcpu placement='auto'>6</vcpu>", 6, 6],
    ['', 1, 1],
  ])('reads vCPUs from %j as current and maximum', (vcpu, current, max) => {
    const f = parseDomainXml(`<domain type='kvm'><name>v</name>${vcpu}</domain>`);
    expect(f.vcpus).toBe(current);
    expect(f.maxVcpus).toBe(max);
  });

  it('reads labels under any prefix or as the default namespace, and only in the labels namespace', () => {
    const f = parseDomainXml(`<domain type='kvm'><metadata>
      <labels xmlns="https://drover.dev/xmlns/labels/1"><label name="zone">b</label></labels>
      <x:labels xmlns:x="https://drover.dev/xmlns/labels/1"><x:label name="rack">r7</x:label><x:label name="empty"></x:label></x:labels>
      <y:labels xmlns:y="https://drover.dev/xmlns/labels/2"><y:label name="rack">wrong</y:label></y:labels>
    </metadata></domain>`);
    expect(f.labels).toEqual({ zone: 'b', rack: 'r7', empty: '' });
  });

  it('refuses XML that is not well-formed, saying which document', () => {
    expect(() => parseDomainXml("<domain type='kvm'><name>x</name><vcpu>2</domain>")).toThrow(
      /domain XML is not well-formed/,
    );
    expect(() => hostCpuModel('<capabilities><host>')).toThrow(/capabilities XML is not well-formed/);
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

  it('converts job stats to drover units with 0-based iterations', () => {
    const s = toMigrationJob(
      'active',
      {
        memory_iteration: 3,
        memory_dirty_rate: 2560n,
        memory_page_size: 4096n,
        memory_bps: 1048576n,
        memory_total: 64n * 1048576n,
        memory_remaining: 3n * 524288n,
        time_elapsed: 1500n,
      },
      false,
    );
    expect(s).toMatchObject({
      type: 'active',
      iteration: 2,
      dirtyMiBps: 10,
      transferMiBps: 1,
      memTotalMiB: 64,
      memRemainingMiB: 1.5,
      elapsedMs: 1500,
      postCopy: false,
    });
    expect(
      toMigrationJob('active', { memory_dirty_rate: 256n, memory_page_size: 65536n }, false).dirtyMiBps,
    ).toBe(16);
    expect(toMigrationJob('completed', {}, false)).toMatchObject({
      iteration: 0,
      dirtyMiBps: 0,
      downtimeMs: 0,
    });
    expect(toMigrationJob('active', { memory_postcopy_requests: 4n }, false).postCopy).toBe(true);
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
