import { describe, expect, it } from 'vitest';
import { LibvirtUriError } from '../../src/libvirt/errors.js';
import { sshArgv, tlsFiles } from '../../src/libvirt/transport.js';
import { parseLibvirtUri, unixSocketPath } from '../../src/libvirt/uri.js';

describe('libvirt URI parsing', () => {
  it.each([
    ['qemu:///system', { transport: 'unix', host: null, path: '/system', remoteName: 'qemu:///system' }],
    [
      'qemu+unix:///system?socket=/tmp/s',
      { transport: 'unix', host: null, params: { socket: '/tmp/s' }, remoteName: 'qemu:///system' },
    ],
    [
      'qemu+tcp://kvm-01/system',
      { transport: 'tcp', host: 'kvm-01', port: null, remoteName: 'qemu:///system' },
    ],
    ['qemu+tcp://kvm-01:1234/system', { transport: 'tcp', host: 'kvm-01', port: 1234 }],
    ['qemu://kvm-01/system', { transport: 'tls', host: 'kvm-01' }],
    [
      'qemu+tls://kvm-01.example.org/system?pkipath=/etc/drover/pki',
      { transport: 'tls', params: { pkipath: '/etc/drover/pki' }, remoteName: 'qemu:///system' },
    ],
    ['qemu+tls://[fd00::4]:16514/system', { transport: 'tls', host: 'fd00::4', port: 16514 }],
    [
      'qemu+ssh://root@kvm-02:2222/system?keyfile=/k&no_verify=1',
      {
        transport: 'ssh',
        user: 'root',
        host: 'kvm-02',
        port: 2222,
        params: { keyfile: '/k', no_verify: '1' },
      },
    ],
    [
      'QEMU+SSH://admin@h/session',
      { driver: 'qemu', transport: 'ssh', path: '/session', remoteName: 'qemu:///session' },
    ],
    ['qemu+tcp://h/system?mode=legacy&foo=bar', { remoteName: 'qemu:///system?foo=bar' }],
    ['qemu+tls://h/system?name=qemu:///embed', { remoteName: 'qemu:///embed' }],
  ])('%s', (raw, expected) => {
    expect(parseLibvirtUri(raw)).toMatchObject(expected);
  });

  it.each([
    ['kvm-01:16509', 'scheme'],
    ['qemu+ftp://h/system', 'transport'],
    ['qemu+unix://somehost/system', 'host'],
    ['qemu+tcp:///system', 'host'],
    ['qemu+ssh:///system', 'host'],
    ['qemu+tls://h/system?socket=/x', 'socket'],
    ['qemu+ssh://h/system?no_verify=yes', 'no_verify'],
    ['qemu+tcp://h:0/system', 'port'],
  ])('rejects %s naming %s', (raw, field) => {
    let err: unknown;
    try {
      parseLibvirtUri(raw);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LibvirtUriError);
    expect((err as LibvirtUriError).field).toBe(field);
    expect((err as LibvirtUriError).code).toBe('libvirt_bad_uri');
  });

  it('finds the unix socket the way libvirt does', () => {
    expect(unixSocketPath(parseLibvirtUri('qemu:///system'))).toBe('/var/run/libvirt/libvirt-sock');
    expect(unixSocketPath(parseLibvirtUri('qemu+unix:///system?socket=/lab/s'))).toBe('/lab/s');
  });

  it('takes TLS files from pkipath', () => {
    expect(tlsFiles(parseLibvirtUri('qemu+tls://h/system?pkipath=/p'))).toEqual({
      caFile: '/p/cacert.pem',
      certFile: '/p/clientcert.pem',
      keyFile: '/p/clientkey.pem',
    });
  });

  it('runs virt-ssh-helper through ssh in batch mode', () => {
    expect(sshArgv(parseLibvirtUri('qemu+ssh://root@kvm-02:2222/system?keyfile=/k&no_verify=1'))).toEqual([
      'ssh',
      '-p',
      '2222',
      '-l',
      'root',
      '-i',
      '/k',
      '-T',
      '-e',
      'none',
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '--',
      'kvm-02',
      'virt-ssh-helper',
      'qemu:///system',
    ]);
    expect(sshArgv(parseLibvirtUri('qemu+ssh://h/system'))).toEqual([
      'ssh',
      '-T',
      '-e',
      'none',
      '-o',
      'BatchMode=yes',
      '--',
      'h',
      'virt-ssh-helper',
      'qemu:///system',
    ]);
  });
});
