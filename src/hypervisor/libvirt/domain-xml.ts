// Reads the few facts drover needs from a libvirt domain XML: memory, vCPUs, CPU model, disks, labels.
// Labels live in the domain's <metadata> as <drover:labels xmlns:drover="https://drover.dev/xmlns/labels/1">
// <drover:label name="app">db</drover:label></drover:labels>.
import {
  attr,
  child,
  childNames,
  children,
  childText,
  parseXml,
  text,
  writeXml,
  type XmlNode,
} from './xml-tree.js';

export const LABELS_NAMESPACE = 'https://drover.dev/xmlns/labels/1';

export interface DomainXmlFacts {
  type: string | null;
  memMiB: number;
  /** vCPUs online now (`<vcpu current=…>`, else the maximum). */
  vcpus: number;
  /** The most vCPUs the domain can have (the `<vcpu>` element's value). */
  maxVcpus: number;
  cpuModel: string | null;
  /** The domain's <cpu> element written back from the parsed document, for CPU comparison on another host. */
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

function memoryMiB(memory: XmlNode | undefined): number {
  if (memory === undefined) return 0;
  const unit = attr(memory, 'unit')?.toLowerCase() ?? 'kib';
  return (Number(text(memory)) * (UNIT_TO_KIB[unit] ?? 1)) / 1024;
}

/** `<vcpu current='2'>8</vcpu>`: 2 vCPUs online now, 8 at most. */
function vcpuCounts(vcpu: XmlNode | undefined): { vcpus: number; maxVcpus: number } {
  const max = Number(text(vcpu)) || 1;
  const current = Number(attr(vcpu, 'current') ?? max) || max;
  return { vcpus: Math.min(current, max), maxVcpus: max };
}

function diskFacts(disk: XmlNode): DomainXmlFacts['disks'][number] {
  const source = child(disk, 'source');
  return {
    target: attr(child(disk, 'target'), 'dev') ?? '',
    source: attr(source, 'file') ?? attr(source, 'dev') ?? attr(source, 'name') ?? attr(source, 'volume'),
    type: attr(disk, 'type') ?? 'file',
    format: attr(child(disk, 'driver'), 'type'),
    shareable: child(disk, 'shareable') !== undefined,
  };
}

/** drover's labels: the `labels` elements in <metadata> whose namespace is LABELS_NAMESPACE, whatever prefix
 * the document gives it; other applications' metadata is left alone. */
function labelsOf(metadata: XmlNode | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const name of childNames(metadata)) {
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? null : name.slice(0, colon);
    if (name.slice(colon + 1) !== 'labels') continue;
    const labelTag = prefix === null ? 'label' : `${prefix}:label`;
    for (const block of children(metadata, name)) {
      if (attr(block, prefix === null ? 'xmlns' : `xmlns:${prefix}`) !== LABELS_NAMESPACE) continue;
      for (const label of children(block, labelTag)) {
        const key = attr(label, 'name');
        if (key !== null) labels[key] = text(label);
      }
    }
  }
  return labels;
}

export function parseDomainXml(xml: string): DomainXmlFacts {
  const domain = parseXml(xml, 'domain', 'domain');
  const cpu = child(domain, 'cpu');
  const osType = child(child(domain, 'os'), 'type');
  const devices = child(domain, 'devices');
  return {
    type: attr(domain, 'type'),
    memMiB: memoryMiB(child(domain, 'memory')),
    ...vcpuCounts(child(domain, 'vcpu')),
    cpuModel: childText(cpu, 'model'),
    cpuXml: cpu === undefined ? null : writeXml('cpu', cpu),
    arch: attr(osType, 'arch'),
    machine: attr(osType, 'machine'),
    emulator: childText(devices, 'emulator'),
    disks: children(devices, 'disk')
      .filter((d) => (attr(d, 'device') ?? 'disk') === 'disk')
      .map(diskFacts),
    labels: labelsOf(child(domain, 'metadata')),
  };
}

/** The host CPU model from a capabilities document (<host><cpu><model>). */
export function hostCpuModel(capabilitiesXml: string): string | null {
  const capabilities = parseXml(capabilitiesXml, 'capabilities', 'capabilities');
  return childText(child(child(capabilities, 'host'), 'cpu'), 'model');
}
