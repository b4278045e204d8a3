// Configuration of the libvirt Hypervisor: the hosts (id, libvirt URI, migration link bandwidth, labels)
// and the connection tunables. Validated with zod so every mistake names its field.
import { z } from 'zod';
import { parseWith, labels, nonEmptyString, positiveNumber, positiveInt } from '../../domain/validation.js';
import { parseLibvirtUri } from '../../libvirt/uri.js';

const libvirtUri = () =>
  nonEmptyString().superRefine((value, ctx) => {
    try {
      parseLibvirtUri(value);
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        message: err instanceof Error ? err.message : String(err),
        input: value,
      });
    }
  });

export const LibvirtHostConfigSchema = z.strictObject({
  id: nonEmptyString(),
  /** How drover connects to this host's daemon, e.g. qemu+tls://kvm-01.example/system. */
  uri: libvirtUri(),
  /** Destination URI as the *source daemon* reaches this host in a peer-to-peer migration (default: uri). */
  peerUri: libvirtUri().optional(),
  /** QEMU migration stream address for incoming migrations, e.g. tcp://10.0.0.4 (default: libvirt picks). */
  migrateUri: nonEmptyString().optional(),
  bandwidthMiBps: positiveNumber().nullable().optional(),
  labels: labels().optional(),
  /** Path prefixes of disk images every host sees (NFS mounts, cluster file systems). */
  sharedStoragePaths: z.array(nonEmptyString()).optional(),
});

export const LibvirtHypervisorOptionsSchema = z.strictObject({
  /** Timeout of every ordinary call (ms). */
  callTimeoutMs: positiveInt().optional(),
  /** Timeout of the call that performs a whole migration (ms). */
  migrationTimeoutMs: positiveInt().optional(),
  connectTimeoutMs: positiveInt().optional(),
  keepaliveIntervalMs: z.number().int().min(0).optional(),
  /** First reconnect delay after a failure (ms); doubles up to reconnectMaxMs. */
  reconnectMinMs: positiveInt().optional(),
  reconnectMaxMs: positiveInt().optional(),
});

export type LibvirtHostConfig = z.input<typeof LibvirtHostConfigSchema>;
export type LibvirtHypervisorOptions = z.input<typeof LibvirtHypervisorOptionsSchema>;

export const LibvirtHostListSchema = z
  .array(LibvirtHostConfigSchema)
  .min(1, { error: 'expected at least one host' })
  .superRefine((hosts, ctx) => {
    const seen = new Set<string>();
    hosts.forEach((h, i) => {
      if (seen.has(h.id))
        ctx.addIssue({
          code: 'custom',
          path: [i, 'id'],
          message: `duplicate host id ${JSON.stringify(h.id)}`,
          input: h.id,
        });
      seen.add(h.id);
    });
  });

export type ParsedLibvirtHostConfig = z.output<typeof LibvirtHostConfigSchema>;

/** Validates a host list; throws a ValidationError naming each bad field (`hosts[1].uri: ...`). */
export function parseHostConfigs(data: unknown, source = 'hosts'): ParsedLibvirtHostConfig[] {
  return parseWith(LibvirtHostListSchema, data, source);
}
