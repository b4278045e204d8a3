// Parses libvirt connection URIs the way libvirt's remote driver reads them:
//   driver[+transport]://[user@][host][:port]/path[?param=value&...]
// e.g. qemu+unix:///system?socket=/run/x.sock, qemu+tcp://h/system, qemu+tls://h:16514/system?pkipath=/pki,
// qemu+ssh://root@h:2222/system?keyfile=/k&no_verify=1. With no transport, a host means TLS, none means unix.
import { LibvirtUriError } from './errors.js';

export type TransportKind = 'unix' | 'tcp' | 'tls' | 'ssh';

export interface LibvirtUri {
  /** The URI as given. */
  raw: string;
  /** Hypervisor driver (`qemu`). */
  driver: string;
  transport: TransportKind;
  user: string | null;
  host: string | null;
  port: number | null;
  /** `/system` or `/session`. */
  path: string;
  params: Record<string, string>;
  /** What the daemon is asked to open: the URI without transport, host and client-side parameters. */
  remoteName: string;
}

export const DEFAULT_TCP_PORT = 16509;
export const DEFAULT_TLS_PORT = 16514;
export const DEFAULT_SSH_PORT = 22;

/** Query parameters the client consumes; everything else is passed on to the daemon in remoteName. */
const CLIENT_PARAMS = new Set([
  'name',
  'command',
  'socket',
  'netcat',
  'keyfile',
  'no_verify',
  'no_tty',
  'pkipath',
  'tls_priority',
  'mode',
  'proxy',
  'sshauth',
  'known_hosts',
  'known_hosts_verify',
  'tls_ciphers',
]);

const TRANSPORTS: readonly TransportKind[] = ['unix', 'tcp', 'tls', 'ssh'];

export function parseLibvirtUri(raw: string): LibvirtUri {
  const scheme = /^([a-z][a-z0-9.-]*)(?:\+([a-z0-9-]+))?:\/\//i.exec(raw);
  if (!scheme)
    throw new LibvirtUriError('scheme', `expected driver[+transport]://..., got ${JSON.stringify(raw)}`);
  const driver = (scheme[1] ?? '').toLowerCase();
  const transportText = scheme[2]?.toLowerCase() ?? null;
  // The WHATWG URL parser wants a host-based scheme; give it one and keep the parts libvirt uses.
  let url: URL;
  try {
    url = new URL(`libvirt://${raw.slice(scheme[0].length)}`);
  } catch {
    throw new LibvirtUriError('uri', `cannot parse ${JSON.stringify(raw)}`);
  }
  const host = url.hostname === '' ? null : decodeURIComponent(url.hostname.replace(/^\[(.*)\]$/, '$1'));
  let transport: TransportKind;
  if (transportText === null) transport = host === null ? 'unix' : 'tls';
  else if ((TRANSPORTS as readonly string[]).includes(transportText))
    transport = transportText as TransportKind;
  else
    throw new LibvirtUriError(
      'transport',
      `${JSON.stringify(transportText)} is not supported (supported: ${TRANSPORTS.join(', ')})`,
    );
  const port = url.port === '' ? null : Number(url.port);
  if (port !== null && (!Number.isInteger(port) || port < 1 || port > 65535))
    throw new LibvirtUriError('port', `expected 1..65535, got ${url.port}`);
  const user = url.username === '' ? null : decodeURIComponent(url.username);
  const params: Record<string, string> = {};
  for (const [k, v] of url.searchParams) params[k] = v;
  const path = url.pathname === '' ? '/' : decodeURIComponent(url.pathname);

  if (transport === 'unix' && host !== null)
    throw new LibvirtUriError('host', `a unix socket URI names no host, got ${JSON.stringify(host)}`);
  if ((transport === 'tcp' || transport === 'tls' || transport === 'ssh') && host === null)
    throw new LibvirtUriError(
      'host',
      `${transport} needs a host, as in ${driver}+${transport}://HOST/system`,
    );
  if (transport !== 'unix' && params.socket !== undefined && transport !== 'ssh')
    throw new LibvirtUriError('socket', `only unix and ssh transports take a socket path`);
  if (params.no_verify !== undefined && !/^[01]$/.test(params.no_verify))
    throw new LibvirtUriError('no_verify', `expected 0 or 1, got ${JSON.stringify(params.no_verify)}`);

  const passOn = [...url.searchParams].filter(([k]) => !CLIENT_PARAMS.has(k));
  const query = passOn.length > 0 ? `?${new URLSearchParams(passOn).toString()}` : '';
  const remoteName = params.name ?? `${driver}://${path}${query}`;
  return { raw, driver, transport, user, host, port, path, params, remoteName };
}

/** The socket libvirtd listens on for a unix URI: `?socket=` or the system/session default. */
export function unixSocketPath(uri: LibvirtUri): string {
  if (uri.params.socket) return uri.params.socket;
  if (uri.path === '/session') {
    const runtime = process.env.XDG_RUNTIME_DIR;
    if (!runtime) throw new LibvirtUriError('path', '/session needs XDG_RUNTIME_DIR or ?socket=');
    return `${runtime}/libvirt/libvirt-sock`;
  }
  return '/var/run/libvirt/libvirt-sock';
}
