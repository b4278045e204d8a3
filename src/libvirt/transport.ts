// Opens the byte stream a libvirt URI names: a unix socket, plain TCP, TLS (client certificate, CA, and the
// one-byte verdict libvirtd sends after the handshake), or ssh running virt-ssh-helper on the far side.
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { LibvirtConnectionError, LibvirtUriError } from './errors.js';
import {
  DEFAULT_SSH_PORT,
  DEFAULT_TCP_PORT,
  DEFAULT_TLS_PORT,
  unixSocketPath,
  type LibvirtUri,
} from './uri.js';

export interface TransportOptions {
  /** Give up on connecting (incl. TLS handshake and check byte) after this long (ms). */
  connectTimeoutMs?: number;
  /** The ssh binary (default `ssh`), for ssh URIs. */
  sshCommand?: string;
}

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Where the TLS client looks for its files: `?pkipath=DIR`, else libvirt's defaults for root or a user. */
export function tlsFiles(uri: LibvirtUri): TlsFiles {
  const dir = uri.params.pkipath;
  if (dir)
    return {
      caFile: join(dir, 'cacert.pem'),
      certFile: join(dir, 'clientcert.pem'),
      keyFile: join(dir, 'clientkey.pem'),
    };
  if (process.getuid?.() === 0)
    return {
      caFile: '/etc/pki/CA/cacert.pem',
      certFile: '/etc/pki/libvirt/clientcert.pem',
      keyFile: '/etc/pki/libvirt/private/clientkey.pem',
    };
  const user = join(homedir(), '.pki', 'libvirt');
  return {
    caFile: join(user, 'cacert.pem'),
    certFile: join(user, 'clientcert.pem'),
    keyFile: join(user, 'clientkey.pem'),
  };
}

/** The argv of the ssh process for an ssh URI (exported so it can be checked without running ssh). */
export function sshArgv(uri: LibvirtUri, sshCommand = 'ssh'): string[] {
  if (!uri.host) throw new LibvirtUriError('host', 'ssh needs a host');
  const argv = [uri.params.command ?? sshCommand];
  if (uri.port !== null && uri.port !== DEFAULT_SSH_PORT) argv.push('-p', String(uri.port));
  if (uri.user) argv.push('-l', uri.user);
  if (uri.params.keyfile) argv.push('-i', uri.params.keyfile);
  argv.push('-T', '-e', 'none', '-o', 'BatchMode=yes');
  if (uri.params.no_verify === '1') argv.push('-o', 'StrictHostKeyChecking=no');
  if (uri.params.known_hosts) argv.push('-o', `UserKnownHostsFile=${uri.params.known_hosts}`);
  argv.push('--', uri.host, 'virt-ssh-helper', uri.remoteName);
  return argv;
}

function connectError(uri: LibvirtUri, detail: string, cause?: unknown): LibvirtConnectionError {
  return new LibvirtConnectionError('libvirt_connect_failed', `cannot connect to ${uri.raw}: ${detail}`, {
    cause,
  });
}

function withTimeout<T extends Socket>(
  socket: T,
  uri: LibvirtUri,
  timeoutMs: number,
  ready: 'connect' | 'secureConnect',
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(connectError(uri, `no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(connectError(uri, err.message, err));
    });
  });
}

/** libvirtd writes one byte after the TLS handshake: 1 when it accepts our certificate and address. */
function readCheckByte(socket: TLSSocket, uri: LibvirtUri, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(connectError(uri, `libvirtd sent no TLS check byte within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReadable = () => {
      const byte = socket.read(1) as Buffer | null;
      if (byte === null) return;
      cleanup();
      if (byte[0] !== 1) {
        socket.destroy();
        reject(
          connectError(uri, 'libvirtd refused our client certificate or address (TLS check byte was not 1)'),
        );
        return;
      }
      resolve(socket);
    };
    const onEnd = () => {
      cleanup();
      reject(
        connectError(
          uri,
          'libvirtd closed the TLS connection before its check byte; is our certificate allowed?',
        ),
      );
    };
    const onError = (err: Error) => {
      cleanup();
      reject(connectError(uri, err.message, err));
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

/** Largest CA certificate, client certificate or key file read for a TLS connection (bytes). */
export const MAX_PEM_FILE_BYTES = 1024 * 1024;

/** Reads a PEM file, refusing one over MAX_PEM_FILE_BYTES (checked before reading, and while reading). */
function readPem(path: string, what: string, uri: LibvirtUri): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw connectError(uri, `cannot read the TLS ${what} ${path} (set ?pkipath=DIR)`, err);
  }
  const tooLarge = (size: string) =>
    connectError(uri, `the TLS ${what} ${path} ${size} more than the limit of ${MAX_PEM_FILE_BYTES} bytes`);
  try {
    const stat = fstatSync(fd);
    if (stat.isFile() && stat.size > MAX_PEM_FILE_BYTES) throw tooLarge(`is ${stat.size} bytes,`);
    const buffer = Buffer.alloc(MAX_PEM_FILE_BYTES + 1);
    let total = 0;
    for (;;) {
      const n = readSync(fd, buffer, total, buffer.length - total, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_PEM_FILE_BYTES) throw tooLarge('is');
    }
    return Buffer.from(buffer.subarray(0, total));
  } catch (err) {
    if (err instanceof LibvirtConnectionError) throw err;
    throw connectError(uri, `cannot read the TLS ${what} ${path} (set ?pkipath=DIR)`, err);
  } finally {
    closeSync(fd);
  }
}

export async function openTransport(uri: LibvirtUri, options: TransportOptions = {}): Promise<Duplex> {
  const timeoutMs = options.connectTimeoutMs ?? 10_000;
  switch (uri.transport) {
    case 'unix':
      return withTimeout(netConnect({ path: unixSocketPath(uri) }), uri, timeoutMs, 'connect');
    case 'tcp':
      return withTimeout(
        netConnect({ host: uri.host ?? 'localhost', port: uri.port ?? DEFAULT_TCP_PORT }),
        uri,
        timeoutMs,
        'connect',
      );
    case 'tls': {
      const files = tlsFiles(uri);
      const verify = uri.params.no_verify !== '1';
      const host = uri.host ?? 'localhost';
      const socket = tlsConnect({
        host,
        port: uri.port ?? DEFAULT_TLS_PORT,
        ca: readPem(files.caFile, 'CA certificate', uri),
        cert: readPem(files.certFile, 'client certificate', uri),
        key: readPem(files.keyFile, 'client key', uri),
        rejectUnauthorized: verify,
        ...(/^[\d.:]+$/.test(host) ? {} : { servername: host }),
      });
      await withTimeout(socket, uri, timeoutMs, 'secureConnect');
      return readCheckByte(socket, uri, timeoutMs);
    }
    case 'ssh':
      return spawnSsh(uri, options.sshCommand);
  }
}

function spawnSsh(uri: LibvirtUri, sshCommand?: string): Promise<Duplex> {
  const [command, ...args] = sshArgv(uri, sshCommand);
  if (!command) throw new LibvirtUriError('command', 'empty ssh command');
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const duplex = Duplex.from({ readable: child.stdout, writable: child.stdin });
  child.on('exit', (code, signal) => {
    duplex.destroy(
      new Error(`ssh exited (${signal ?? `code ${code}`})${stderr.trim() ? `: ${stderr.trim()}` : ''}`),
    );
  });
  duplex.on('close', () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(duplex));
    child.once('error', (err) => reject(connectError(uri, `cannot run ${command}: ${err.message}`, err)));
  });
}
