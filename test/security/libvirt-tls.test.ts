// TLS to libvirt verifies the daemon's certificate by default: against a TLS server on loopback, a
// self-signed certificate outside the client's CA, or a CA-signed one for another name, makes the connection
// fail before a single RPC byte is sent. A certificate the CA signed for the right name gets through the
// handshake (the server then refuses us with check byte 0, which proves the handshake itself succeeded).
// `?no_verify=1` is the only way to accept an unverified daemon.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtClient } from '../../src/libvirt/libvirt-client.js';

const run = promisify(execFile);
let dir = '';

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { cwd: dir });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A key and a certificate for `cn` with `san`, signed by the CA (or self-signed when ca is null). */
async function cert(name: string, cn: string, san: string, ca: string | null): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
  if (ca === null) {
    await openssl(
      'req',
      '-x509',
      ...EC,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      `subjectAltName=${san}`,
    );
    return;
  }
  await openssl('req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  await openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  );
}

interface TlsServer {
  server: Server;
  port: number;
  handshakes: number;
}

async function tlsServer(name: string, checkByte: number): Promise<TlsServer> {
  const state: TlsServer = { server: null as unknown as Server, port: 0, handshakes: 0 };
  state.server = createServer(
    { key: await readFile(join(dir, `${name}.key`)), cert: await readFile(join(dir, `${name}.pem`)) },
    (socket) => {
      state.handshakes += 1;
      socket.on('error', () => socket.destroy());
      socket.end(Buffer.from([checkByte]));
    },
  );
  state.server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  const address = state.server.address();
  state.port = typeof address === 'object' && address ? address.port : 0;
  return state;
}

const servers: TlsServer[] = [];
let pki = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'drover-tls-'));
  await openssl(
    'req',
    '-x509',
    ...EC,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=drover test CA',
  );
  await cert('client', 'drover', 'DNS:drover', 'ca');
  await cert('good', 'localhost', 'DNS:localhost,IP:127.0.0.1', 'ca');
  await cert('other', 'other.example', 'DNS:other.example', 'ca');
  await cert('self', 'localhost', 'DNS:localhost,IP:127.0.0.1', null);
  // libvirt's pkipath layout: cacert.pem, clientcert.pem, clientkey.pem.
  pki = join(dir, 'pki');
  await mkdir(pki);
  await copyFile(join(dir, 'ca.pem'), join(pki, 'cacert.pem'));
  await copyFile(join(dir, 'client.pem'), join(pki, 'clientcert.pem'));
  await copyFile(join(dir, 'client.key'), join(pki, 'clientkey.pem'));
}, 60_000);

afterAll(async () => {
  for (const s of servers) await new Promise<void>((r) => s.server.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

async function connectError(uri: string): Promise<{ code: string; message: string; cause: string }> {
  try {
    const client = await LibvirtClient.connect(uri, { connectTimeoutMs: 5_000, callTimeoutMs: 2_000 });
    client.destroy();
  } catch (err) {
    const e = err as { code: string; message: string; cause?: { code?: string } };
    return { code: e.code, message: e.message, cause: e.cause?.code ?? '' };
  }
  throw new Error(`connecting to ${uri} succeeded`);
}

describe('libvirt TLS certificate verification', () => {
  it('refuses a self-signed server certificate that is not in the CA, by name and by IP', async () => {
    const s = await tlsServer('self', 1);
    servers.push(s);
    for (const host of ['localhost', '127.0.0.1']) {
      const err = await connectError(`qemu+tls://${host}:${s.port}/system?pkipath=${pki}`);
      expect(err.code).toBe('libvirt_connect_failed');
      expect(err.cause).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
    }
    expect(s.handshakes).toBe(0);
  });

  it('refuses a CA-signed certificate issued for another name', async () => {
    const s = await tlsServer('other', 1);
    servers.push(s);
    const err = await connectError(`qemu+tls://localhost:${s.port}/system?pkipath=${pki}`);
    expect(err.code).toBe('libvirt_connect_failed');
    expect(err.cause).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(s.handshakes).toBe(0);
  });

  it('completes the handshake with a CA-signed certificate for the right name', async () => {
    const s = await tlsServer('good', 0);
    servers.push(s);
    const err = await connectError(`qemu+tls://localhost:${s.port}/system?pkipath=${pki}`);
    // The TLS layer accepted the daemon; it was the daemon's check byte (0) that ended the connection.
    expect(err.code).toBe('libvirt_connect_failed');
    expect(err.message).toMatch(/check byte/);
    expect(s.handshakes).toBe(1);
  });

  it('accepts an unverified daemon only with an explicit ?no_verify=1', async () => {
    const s = await tlsServer('self', 0);
    servers.push(s);
    const err = await connectError(`qemu+tls://localhost:${s.port}/system?pkipath=${pki}&no_verify=1`);
    expect(err.message).toMatch(/check byte/);
    expect(s.handshakes).toBe(1);
  });
});
