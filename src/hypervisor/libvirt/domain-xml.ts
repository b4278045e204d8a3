// Reads the few facts drover needs from a libvirt domain XML: memory, vCPUs, CPU model, disks, labels.
// Labels live in the domain's <metadata> as <drover:labels xmlns:drover="https://drover.dev/xmlns/labels/1">
// <drover:label name="app">db</drover:label></drover:labels>.
export const LABELS_NAMESPACE = 'https://drover.dev/xmlns/labels/1';

export interface DomainXmlFacts {
  type: string | null;
  memMiB: number;
  vcpus: number;
  cpuModel: string | null;
  /** The <cpu> element as written, for CPU comparison on another host. */
  cpuXml: string | null;
  arch: string | null;
  machine: string | null;
  emulator: string | null;
  disks: { target: string; source: string | null; type: string; format: string | null; shareable: boolean }[];
  labels: Record<string, string>;
}

const UNIT_TO_KIB: Record<string, number> = {
  b: 1 / 1024,
  bytes: 1 / 1024,
  k: 1,
  kib: 1,
  kb: 1000 / 1024,
  m: 1024,
  mib: 1024,
  mb: 1_000_000 / 1024,
  g: 1024 * 1024,
  gib: 1024 * 1024,
  gb: 1_000_000_000 / 1024,
};

function attr(tag: string, name: string): string | null {
  const m = new RegExp(`\\s${name}=(['"])(.*?)\\1`).exec(tag);
  return m ? unescapeXml(m[2] ?? '') : null;
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

function element(xml: string, name: string): { tag: string; body: string } | null {
  const m = new RegExp(`<${name}(\\s[^>]*)?(?:/>|>([\\s\\S]*?)</${name}>)`).exec(xml);
  return m ? { tag: `<${name}${m[1] ?? ''}>`, body: m[2] ?? '' } : null;
}

export function parseDomainXml(xml: string): DomainXmlFacts {
  const domainTag = /<domain(\s[^>]*)?>/.exec(xml)?.[0] ?? '';
  const memory = element(xml, 'memory');
  const unit = (memory && attr(memory.tag, 'unit'))?.toLowerCase() ?? 'kib';
  const memKiB = Number(memory?.body.trim() ?? 0) * (UNIT_TO_KIB[unit] ?? 1);
  const vcpu = element(xml, 'vcpu');
  const cpu = /<cpu[\s>][\s\S]*?<\/cpu>|<cpu\s[^>]*\/>/.exec(xml)?.[0] ?? null;
  const cpuModel = cpu ? (element(cpu, 'model')?.body.trim() ?? null) : null;
  const osType = /<type\s[^>]*>[^<]*<\/type>/.exec(element(xml, 'os')?.body ?? '')?.[0] ?? '';
  const devices = element(xml, 'devices')?.body ?? '';
  const disks: DomainXmlFacts['disks'] = [];
  for (const m of devices.matchAll(/<disk(\s[^>]*)>([\s\S]*?)<\/disk>/g)) {
    const tag = `<disk${m[1] ?? ''}>`;
    const body = m[2] ?? '';
    if ((attr(tag, 'device') ?? 'disk') !== 'disk') continue;
    const sourceEl = /<source(\s[^>]*)?\/?>/.exec(body)?.[0] ?? '';
    const driverEl = /<driver(\s[^>]*)?\/?>/.exec(body)?.[0] ?? '';
    const targetEl = /<target(\s[^>]*)?\/?>/.exec(body)?.[0] ?? '';
    disks.push({
      target: attr(targetEl, 'dev') ?? '',
      source:
        attr(sourceEl, 'file') ?? attr(sourceEl, 'dev') ?? attr(sourceEl, 'name') ?? attr(sourceEl, 'volume'),
      type: attr(tag, 'type') ?? 'file',
      format: attr(driverEl, 'type'),
      shareable: /<shareable\s*\/>/.test(body),
    });
  }
  const labels: Record<string, string> = {};
  const metadata = element(xml, 'metadata')?.body ?? '';
  for (const block of metadata.matchAll(/<(\w+):labels\s[^>]*>([\s\S]*?)<\/\1:labels>/g)) {
    if (!(block[0] ?? '').includes(LABELS_NAMESPACE)) continue;
    for (const l of (block[2] ?? '').matchAll(/<\w+:label\s+name=(['"])(.*?)\1\s*>([\s\S]*?)<\/\w+:label>/g))
      labels[unescapeXml(l[2] ?? '')] = unescapeXml(l[3] ?? '');
  }
  return {
    type: attr(domainTag, 'type'),
    memMiB: memKiB / 1024,
    vcpus: Number(vcpu?.body.trim() ?? 1) || 1,
    cpuModel,
    cpuXml: cpu,
    arch: attr(osType, 'arch'),
    machine: attr(osType, 'machine'),
    emulator: element(devices, 'emulator')?.body.trim() ?? null,
    disks,
    labels,
  };
}

/** The host CPU model from a capabilities document (<host><cpu><model>). */
export function hostCpuModel(capabilitiesXml: string): string | null {
  const host = element(capabilitiesXml, 'host')?.body ?? '';
  const cpu = element(host, 'cpu')?.body ?? '';
  return element(cpu, 'model')?.body.trim() ?? null;
}
