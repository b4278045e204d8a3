// Storage pool and volume XML: the few facts drover reads from libvirt's descriptions, and the small
// documents it writes to create a directory pool or a volume.
import { attr, child, childText, parseXml, text, type XmlNode } from './xml-tree.js';

export interface PoolXmlFacts {
  type: string;
  name: string;
  targetPath: string | null;
}

export interface VolumeXmlFacts {
  name: string;
  path: string | null;
  format: string | null;
  capacityBytes: number | null;
  allocationBytes: number | null;
  /** `<physical>`: the length of the image file. */
  physicalBytes: number | null;
  backing: { path: string; format: string | null } | null;
}

const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
  tb: 1000 ** 4,
};

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function bytes(node: XmlNode | undefined): number | null {
  if (node === undefined) return null;
  const value = Number(text(node));
  if (!Number.isFinite(value)) return null;
  const unit = (attr(node, 'unit') ?? 'bytes').toLowerCase();
  return value * (UNIT_BYTES[unit] ?? 1);
}

export function parsePoolXml(xml: string): PoolXmlFacts {
  const pool = parseXml(xml, 'storage pool', 'pool');
  return {
    type: attr(pool, 'type') ?? 'unknown',
    name: childText(pool, 'name') ?? '',
    targetPath: childText(child(pool, 'target'), 'path'),
  };
}

export function parseVolumeXml(xml: string): VolumeXmlFacts {
  const volume = parseXml(xml, 'storage volume', 'volume');
  // <backingStore> has its own <path> and <format>, apart from the volume's <target>.
  const target = child(volume, 'target');
  const backing = child(volume, 'backingStore');
  const backingPath = childText(backing, 'path');
  return {
    name: childText(volume, 'name') ?? '',
    path: childText(target, 'path'),
    format: attr(child(target, 'format'), 'type'),
    capacityBytes: bytes(child(volume, 'capacity')),
    allocationBytes: bytes(child(volume, 'allocation')),
    physicalBytes: bytes(child(volume, 'physical')),
    backing: backingPath ? { path: backingPath, format: attr(child(backing, 'format'), 'type') } : null,
  };
}

/** A persistent directory pool at `targetPath`. */
export function dirPoolXml(name: string, targetPath: string): string {
  return `<pool type='dir'><name>${escapeXml(name)}</name><target><path>${escapeXml(targetPath)}</path></target></pool>`;
}

/** A new volume: empty (allocation 0, so sparse where the format allows), or an overlay of `backing`. */
export function volumeXml(spec: {
  name: string;
  format: string;
  capacityBytes: number;
  backing?: { path: string; format: string | null } | null;
}): string {
  const backing = spec.backing
    ? `<backingStore><path>${escapeXml(spec.backing.path)}</path>${
        spec.backing.format ? `<format type='${escapeXml(spec.backing.format)}'/>` : ''
      }</backingStore>`
    : '';
  return (
    `<volume><name>${escapeXml(spec.name)}</name>` +
    `<capacity unit='bytes'>${Math.round(spec.capacityBytes)}</capacity><allocation unit='bytes'>0</allocation>` +
    `<target><format type='${escapeXml(spec.format)}'/></target>${backing}</volume>`
  );
}
