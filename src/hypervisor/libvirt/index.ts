// The libvirt implementation of drover's Hypervisor interface.
export { LibvirtHypervisor, dirtyRateOf, toHypervisorError, vmStateOf } from './libvirt-hypervisor.js';
export {
  LibvirtHostConfigSchema,
  LibvirtHostListSchema,
  LibvirtHypervisorOptionsSchema,
  parseHostConfigs,
  type LibvirtHostConfig,
  type LibvirtHypervisorOptions,
  type ParsedLibvirtHostConfig,
} from './host-config.js';
export { parseDomainXml, hostCpuModel, LABELS_NAMESPACE, type DomainXmlFacts } from './domain-xml.js';
export { toMigrationJob, jobTypeName } from './job-stats.js';
