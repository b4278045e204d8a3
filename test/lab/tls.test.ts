// The libvirt client over TLS against a real daemon: certificates made here with certtool, client
// certificate checked by libvirtd, and its one-byte verdict after the handshake.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtClient } from '../../src/libvirt/libvirt-client.js';
import { isConnectionLost } from '../../src/libvirt/errors.js';
import { labCommand, labDir, labHost } from './lab-client.js';

const HOST = 'lab2';

function certtool(args: string[]): void {
  execFileSync('certtool', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA and a certificate signed by it (key, cert) written into dir. */
function makeCa(dir: string, name: string): void {
  certtool(['--generate-privkey', '--bits=2048', '--outfile', join(dir, `${name}key.pem`)]);
  writeFileSync(
    join(dir, `${name}.info`),
    `cn = ${name} test CA\nca\ncert_signing_key\nexpiration_days = 2\n`,
  );
  certtool([
    '--generate-self-signed',
    '--load-privkey',
    join(dir, `${name}key.pem`),
    '--template',
    join(dir, `${name}.info`),
    '--outfile',
    join(dir, `${name}cert.pem`),
  ]);
}

function makeCert(dir: string, ca: string, name: string, template: string): void {
  certtool(['--generate-privkey', '--bits=2048', '--outfile', join(dir, `${name}key.pem`)]);
  writeFileSync(join(dir, `${name}.info`), template);
  certtool([
    '--generate-certificate',
    '--load-privkey',
    join(dir, `${name}key.pem`),
    '--load-ca-certificate',
    join(dir, `${ca}cert.pem`),
    '--load-ca-privkey',
    join(dir, `${ca}key.pem`),
    '--template',
    join(dir, `${name}.info`),
    '--outfile',
    join(dir, `${name}cert.pem`),
  ]);
}

/** A client pki dir as libvirt's ?pkipath= expects: cacert.pem, clientcert.pem, clientkey.pem. */
function clientPki(dir: string, sub: string, ca: string, client: string): string {
  const out = join(dir, sub);
  mkdirSync(out, { recursive: true });
  copyFileSync(join(dir, `${ca}cert.pem`), join(out, 'cacert.pem'));
  copyFileSync(join(dir, `${client}cert.pem`), join(out, 'clientcert.pem'));
  copyFileSync(join(dir, `${client}key.pem`), join(out, 'clientkey.pem'));
  return out;
}

describe('libvirt client over TLS', () => {
  const dir = join(labDir(), `tls-${process.pid}`);
  let server: Server;
  let port = 0;

  beforeAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    makeCa(dir, 'ca');
    makeCert(
      dir,
      'ca',
      'server',
      'cn = localhost\ndns_name = localhost\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n',
    );
    makeCert(
      dir,
      'ca',
      'client',
      'cn = drover-test-client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n',
    );
    makeCa(dir, 'rogue');
    makeCert(
      dir,
      'rogue',
      'stranger',
      'cn = stranger\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n',
    );
    const serverDir = join(dir, 'server-pki');
    mkdirSync(serverDir);
    copyFileSync(join(dir, 'cacert.pem'), join(serverDir, 'cacert.pem'));
    copyFileSync(join(dir, 'servercert.pem'), join(serverDir, 'servercert.pem'));
    copyFileSync(join(dir, 'serverkey.pem'), join(serverDir, 'serverkey.pem'));
    await labCommand('tls-on', HOST, serverDir);
    // The daemon listens inside its network namespace; reach it through the lab's unix-socket forwarder.
    const forward = join(labHost(HOST).dir, 'tls-forward.sock');
    server = createServer((c) => {
      const up = connect(forward);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    port = typeof address === 'object' && address ? address.port : 0;
  });

  afterAll(async () => {
    server?.close();
    await labCommand('tls-off', HOST);
    rmSync(dir, { recursive: true, force: true });
  });

  it('connects with a client certificate from the CA the daemon trusts', async () => {
    const pki = clientPki(dir, 'good', 'ca', 'client');
    const client = await LibvirtClient.connect(`qemu+tls://localhost:${port}/system?pkipath=${pki}`, {
      callTimeoutMs: 10_000,
    });
    try {
      expect(client.uri.transport).toBe('tls');
      expect(await client.hostname()).toBe(HOST);
      expect((await client.nodeInfo()).cpus).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
  });

  it('is refused with a certificate from another CA, with a typed connection error', async () => {
    const pki = clientPki(dir, 'bad', 'ca', 'stranger');
    const err: unknown = await LibvirtClient.connect(`qemu+tls://localhost:${port}/system?pkipath=${pki}`, {
      connectTimeoutMs: 5_000,
    }).catch((e: unknown) => e);
    expect(isConnectionLost(err)).toBe(true);
    expect(String(err)).toMatch(/localhost/);
  });

  it('refuses a server whose certificate does not match the host name', async () => {
    const pki = clientPki(dir, 'good2', 'ca', 'client');
    // the server certificate names only `localhost`, so the same server reached as 127.0.0.1 must be refused
    const err: unknown = await LibvirtClient.connect(`qemu+tls://127.0.0.1:${port}/system?pkipath=${pki}`, {
      connectTimeoutMs: 5_000,
    }).catch((e: unknown) => e);
    expect(isConnectionLost(err)).toBe(true);
    expect(String(err)).toMatch(/altnames/);
  });
});
