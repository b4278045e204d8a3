// Storage pool and volume XML as libvirt 9.0 writes it (the samples are vol-dumpxml / pool-dumpxml output of
// the lab's daemons), and the documents drover writes to create pools and volumes.
import { describe, expect, it } from 'vitest';
import {
  dirPoolXml,
  parsePoolXml,
  parseVolumeXml,
  volumeXml,
} from '../../src/hypervisor/libvirt/storage-xml.js';

const OVERLAY = `<volume type='file'>
  <name>t.qcow2</name>
  <key>/var/lib/libvirt/images/dbg1/t.qcow2</key>
  <capacity unit='bytes'>33554432</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196616</physical>
  <target>
    <path>/var/lib/libvirt/images/dbg1/t.qcow2</path>
    <format type='qcow2'/>
    <permissions><mode>0644</mode><owner>0</owner><group>0</group></permissions>
    <compat>1.1</compat>
    <clusterSize unit='B'>65536</clusterSize>
    <features/>
  </target>
  <backingStore>
    <path>/var/lib/libvirt/images/dbg1/b.qcow2</path>
    <format type='qcow2'/>
    <permissions><mode>0644</mode><owner>0</owner><group>0</group></permissions>
  </backingStore>
</volume>`;

const RAW = `<volume type='file'>
  <name>x.img</name>
  <key>/var/lib/libvirt/images/dbg1/x.img</key>
  <capacity unit='bytes'>100000</capacity>
  <allocation unit='bytes'>0</allocation>
  <physical unit='bytes'>100000</physical>
  <target>
    <path>/var/lib/libvirt/images/dbg1/x.img</path>
    <format type='raw'/>
  </target>
</volume>`;

const POOL = `<pool type='dir'>
  <name>dbg1</name>
  <uuid>ddd9129e-03be-4d59-bd4e-5d7dd6523973</uuid>
  <capacity unit='bytes'>270553174016</capacity>
  <allocation unit='bytes'>24323248128</allocation>
  <available unit='bytes'>246229925888</available>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images/dbg1</path>
    <permissions><mode>0711</mode><owner>0</owner><group>0</group></permissions>
  </target>
</pool>`;

describe('storage XML', () => {
  it('reads an overlay: its own path and format, not those of its backing store', () => {
    expect(parseVolumeXml(OVERLAY)).toEqual({
      name: 't.qcow2',
      path: '/var/lib/libvirt/images/dbg1/t.qcow2',
      format: 'qcow2',
      capacityBytes: 33554432,
      allocationBytes: 200704,
      physicalBytes: 196616,
      backing: { path: '/var/lib/libvirt/images/dbg1/b.qcow2', format: 'qcow2' },
    });
  });

  it('reads a raw volume without a backing store', () => {
    expect(parseVolumeXml(RAW)).toMatchObject({
      format: 'raw',
      capacityBytes: 100000,
      allocationBytes: 0,
      physicalBytes: 100000,
      backing: null,
    });
  });

  it.each([
    ["<capacity unit='KiB'>2</capacity>", 2048],
    ["<capacity unit='G'>1</capacity>", 1024 ** 3],
    ["<capacity unit='GB'>1</capacity>", 1e9],
    ['<capacity>512</capacity>', 512],
  ])('converts %s to bytes', (el, bytes) => {
    expect(parseVolumeXml(`<volume><name>v</name>${el}</volume>`).capacityBytes).toBe(bytes);
  });

  it('reads a pool: type, name and target directory', () => {
    expect(parsePoolXml(POOL)).toEqual({
      type: 'dir',
      name: 'dbg1',
      targetPath: '/var/lib/libvirt/images/dbg1',
    });
  });

  it('reads a network pool: its <source> host and directory are not the target', () => {
    expect(
      parsePoolXml(`<pool type='netfs'>
  <name>shared</name>
  <source>
    <host name='nfs.example'/>
    <dir path='/export/images'/>
    <format type='nfs'/>
  </source>
  <target>
    <path>/var/lib/libvirt/images/shared</path>
  </target>
</pool>`),
    ).toEqual({ type: 'netfs', name: 'shared', targetPath: '/var/lib/libvirt/images/shared' });
  });

  it('reads a volume whose name looks like a number as text', () => {
    expect(
      parseVolumeXml('<volume><name>007</name><target><path>/p/007</path></target></volume>'),
    ).toMatchObject({
      name: '007',
      path: '/p/007',
      format: null,
      capacityBytes: null,
    });
  });

  it('refuses storage XML that is not well-formed, saying which document', () => {
    expect(() => parsePoolXml("<pool type='dir'><name>x</pool>")).toThrow(
      /storage pool XML is not well-formed/,
    );
    expect(() => parseVolumeXml('<volume><name>v</name>')).toThrow(/storage volume XML is not well-formed/);
  });

  it('writes pool and volume documents that read back, escaping what XML needs escaped', () => {
    const pool = dirPoolXml("a&b's", "/srv/x<y>'z");
    expect(pool).toContain('&amp;');
    expect(parsePoolXml(pool)).toEqual({ type: 'dir', name: "a&b's", targetPath: "/srv/x<y>'z" });
    const overlay = volumeXml({
      name: 'top.qcow2',
      format: 'qcow2',
      capacityBytes: 64 * 1024 * 1024,
      backing: { path: '/srv/images/base&1.qcow2', format: 'qcow2' },
    });
    expect(parseVolumeXml(overlay)).toMatchObject({
      name: 'top.qcow2',
      format: 'qcow2',
      capacityBytes: 64 * 1024 * 1024,
      allocationBytes: 0,
      backing: { path: '/srv/images/base&1.qcow2', format: 'qcow2' },
    });
    expect(parseVolumeXml(volumeXml({ name: 'e.raw', format: 'raw', capacityBytes: 10 })).backing).toBeNull();
  });
});
