// Storage pool and volume XML: the few facts drover reads from libvirt's descriptions, and the small
// documents it writes to create a directory pool or a volume.

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

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function attr(tag: string, name: string): string | null {
  const m = new RegExp(`\\s${name}=(['"])(.*?)\\1`).exec(tag);
  return m ? unescapeXml(m[2] ?? '') : null;
}

/** First <name ...>body</name> (or <name .../>) directly in `xml` (no nesting of the same name expected). */
function element(xml: string, name: string): { tag: string; body: string } | null {
  const m = new RegExp(`<${name}(\\s[^>]*)?(?:/>|>([\\s\\S]*?)</${name}>)`).exec(xml);
  return m ? { tag: `<${name}${m[1] ?? ''}>`, body: m[2] ?? '' } : null;
}

function text(xml: string, name: string): string | null {
  const el = element(xml, name);
  return el ? unescapeXml(el.body.trim()) : null;
}

function bytes(xml: string, name: string): number | null {
  const el = element(xml, name);
  if (!el) return null;
  const value = Number(el.body.trim());
  if (!Number.isFinite(value)) return null;
  const unit = (attr(el.tag, 'unit') ?? 'bytes').toLowerCase();
  return value * (UNIT_BYTES[unit] ?? 1);
}

export function parsePoolXml(xml: string): PoolXmlFacts {
  const poolTag = /<pool(\s[^>]*)?>/.exec(xml)?.[0] ?? '';
  const target = element(xml, 'target')?.body ?? '';
  return {
    type: attr(poolTag, 'type') ?? 'unknown',
    name: text(xml, 'name') ?? '',
    targetPath: text(target, 'path'),
  };
}

export function parseVolumeXml(xml: string): VolumeXmlFacts {
  // <backingStore> has its own <path> and <format>: read it apart from the volume's <target>.
  const backingEl = element(xml, 'backingStore');
  const withoutBacking = backingEl ? xml.replace(/<backingStore[\s\S]*?<\/backingStore>/, '') : xml;
  const target = element(withoutBacking, 'target')?.body ?? '';
  const backingPath = backingEl ? text(backingEl.body, 'path') : null;
  const formatOf = (body: string) => {
    const f = element(body, 'format');
    return f ? attr(f.tag, 'type') : null;
  };
  return {
    name: text(withoutBacking, 'name') ?? '',
    path: text(target, 'path'),
    format: formatOf(target),
    capacityBytes: bytes(withoutBacking, 'capacity'),
    allocationBytes: bytes(withoutBacking, 'allocation'),
    physicalBytes: bytes(withoutBacking, 'physical'),
    backing: backingEl && backingPath ? { path: backingPath, format: formatOf(backingEl.body) } : null,
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
