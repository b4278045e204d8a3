// Settings that work but weaken drover's security, found in a loaded config: libvirt connections without
// certificate checks (no_verify) or without encryption (qemu+tcp), Redis over plain redis:// to another
// host, an API on a non-loopback address over plain HTTP, files holding tokens or keys that every local
// user can read, and tokens with little entropy. `drover serve` logs each at start and `drover doctor`
// lists each; neither refuses to run (a lab or a trusted management network may want exactly this).
import { stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import type { LoadedConfig } from './config.js';

export interface SecurityWarning {
  /** The config field (or file) the warning is about. */
  field: string;
  message: string;
}

/** Tokens with less estimated entropy than this (bits) are warned about. */
export const MIN_TOKEN_ENTROPY_BITS = 64;

/** Shannon entropy of the token's characters times its length: a rough upper bound of its guessing work. */
export function tokenEntropyBits(token: string): number {
  const counts = new Map<string, number>();
  for (const c of token) counts.set(c, (counts.get(c) ?? 0) + 1);
  const n = [...token].length;
  let perChar = 0;
  for (const k of counts.values()) perChar -= (k / n) * Math.log2(k / n);
  return perChar * n;
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[?::1\]?)$/i;

function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/** Whether every local user may read the file (mode o+r); null when it cannot be looked at. */
async function worldReadable(path: string): Promise<boolean | null> {
  try {
    return ((await stat(path)).mode & 0o004) !== 0;
  } catch {
    return null;
  }
}

function libvirtUriWarnings(field: string, uri: string): SecurityWarning[] {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return [];
  }
  const out: SecurityWarning[] = [];
  if (url.protocol === 'qemu+tcp:')
    out.push({
      field,
      message: `${url.protocol}// is neither encrypted nor authenticated: anyone on the path can read and drive this libvirt daemon; use qemu+tls:// or qemu+ssh://`,
    });
  if (url.searchParams.get('no_verify') === '1')
    out.push({
      field,
      message: 'no_verify=1 turns off the check of the daemon certificate: any server can pose as this host',
    });
  return out;
}

export async function securityWarnings(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SecurityWarning[]> {
  const { config } = loaded;
  const out: SecurityWarning[] = [];

  if (config.hypervisor.kind === 'libvirt') {
    const keyFiles = new Set<string>();
    config.hypervisor.hosts.forEach((h, i) => {
      for (const [name, uri] of [
        ['uri', h.uri],
        ['peerUri', h.peerUri],
      ] as const) {
        if (uri === undefined) continue;
        out.push(...libvirtUriWarnings(`hypervisor.hosts[${i}].${name}`, uri));
        try {
          const params = new URL(uri).searchParams;
          const pki = params.get('pkipath');
          if (pki !== null) keyFiles.add(join(pki, 'clientkey.pem'));
          const keyfile = params.get('keyfile');
          if (keyfile !== null) keyFiles.add(keyfile);
        } catch {
          // not a URL: the config schema reports it
        }
      }
      if (h.migrateUri?.startsWith('tcp://'))
        out.push({
          field: `hypervisor.hosts[${i}].migrateUri`,
          message: 'tcp:// migration streams carry guest memory unencrypted (use libvirt TLS migration)',
        });
    });
    for (const file of keyFiles)
      if ((await worldReadable(file)) === true)
        out.push({ field: file, message: 'a private key that every local user can read (chmod 600)' });
  }

  const redisUrl = env.REDIS_URL ?? config.redis.url;
  if (redisUrl !== undefined) {
    try {
      const url = new URL(redisUrl);
      if (url.protocol === 'redis:' && !isLoopback(url.hostname))
        out.push({
          field: env.REDIS_URL !== undefined ? 'REDIS_URL' : 'redis.url',
          message: `redis:// to ${url.hostname} is unencrypted: plans, leases and jobs cross the network in clear (use rediss://)`,
        });
    } catch {
      // the connection reports an unusable URL
    }
  }

  if (config.api.enabled && !isLoopback(config.api.host))
    out.push({
      field: 'api.host',
      message: `the API listens on ${config.api.host} over plain HTTP: bearer tokens cross the network in clear (put TLS in front)`,
    });

  const tokensInConfig = config.api.tokens.some((t) => t.value !== undefined);
  const passwordInConfig = /\/\/[^/@\s]*:[^/@\s]+@/.test(config.redis.url ?? '');
  if ((tokensInConfig || passwordInConfig) && (await worldReadable(loaded.path)) === true)
    out.push({
      field: loaded.path,
      message: `the config holds ${tokensInConfig ? 'API tokens' : 'the Redis password'} and every local user can read it (chmod 600)`,
    });
  for (const [i, t] of config.api.tokens.entries()) {
    if (t.file === undefined) continue;
    const file = isAbsolute(t.file) ? t.file : resolve(loaded.dir, t.file);
    if ((await worldReadable(file)) === true)
      out.push({
        field: `api.tokens[${i}].file`,
        message: `${file} holds token ${t.name} and every local user can read it (chmod 600)`,
      });
  }
  for (const token of loaded.tokens) {
    const bits = tokenEntropyBits(token.secret);
    if (bits < MIN_TOKEN_ENTROPY_BITS)
      out.push({
        field: `api.tokens[${config.api.tokens.findIndex((t) => t.name === token.name)}]`,
        message: `token ${token.name} has about ${Math.round(bits)} bits of entropy (want ${MIN_TOKEN_ENTROPY_BITS}+): use e.g. openssl rand -hex 32`,
      });
  }
  return out;
}
