// Protocol tables following libvirt 9.0.0's src/remote/remote_protocol.x (remote program 0x20008086 version 1) and src/rpc/virnetprotocol.x / virkeepaliveprotocol.x.
// Procedure numbers, flag and enum values, and the wire layout of every struct this client sends or receives.
// Only tables and layouts live here; the client logic is in rpc-connection.ts and libvirt-client.ts.
import { LibvirtProtocolError } from './errors.js';
import { XdrReader, XdrWriter } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;
export const KeepaliveProcedure = { PING: 1, PONG: 2 } as const;

/** Largest packet libvirt sends or accepts (VIR_NET_MESSAGE_MAX), including the 4-byte length word. */
export const MAX_PACKET_BYTES = 32 * 1024 * 1024 + 4;
/** Length word plus the six header words. */
export const HEADER_BYTES = 4 + 24;

export const REMOTE_STRING_MAX = 4_194_304;
export const REMOTE_DOMAIN_LIST_MAX = 16_384;
export const REMOTE_TYPED_PARAMS_MAX = 16_384;
export const REMOTE_NODE_STATS_MAX = 16;
export const REMOTE_AUTH_TYPE_LIST_MAX = 20;
export const REMOTE_MIGRATE_COOKIE_MAX = 4_194_304;
export const REMOTE_STORAGE_POOL_LIST_MAX = 16_384;

export const MessageType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
} as const;
export const MessageStatus = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;

export const Procedure = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  NODE_GET_INFO: 6,
  CONNECT_GET_CAPABILITIES: 7,
  DOMAIN_CREATE: 9,
  DOMAIN_DEFINE_XML: 11,
  DOMAIN_DESTROY: 12,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_LOOKUP_BY_UUID: 24,
  DOMAIN_RESUME: 28,
  DOMAIN_SUSPEND: 34,
  CONNECT_GET_HOSTNAME: 59,
  CONNECT_SUPPORTS_FEATURE: 60,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  STORAGE_POOL_CREATE_XML: 76,
  STORAGE_POOL_DEFINE_XML: 77,
  STORAGE_POOL_CREATE: 78,
  STORAGE_POOL_BUILD: 79,
  STORAGE_POOL_DESTROY: 80,
  STORAGE_POOL_UNDEFINE: 82,
  STORAGE_POOL_REFRESH: 83,
  STORAGE_POOL_LOOKUP_BY_NAME: 84,
  STORAGE_POOL_LOOKUP_BY_VOLUME: 86,
  STORAGE_POOL_GET_INFO: 87,
  STORAGE_POOL_GET_XML_DESC: 88,
  STORAGE_POOL_SET_AUTOSTART: 90,
  STORAGE_VOL_CREATE_XML: 93,
  STORAGE_VOL_DELETE: 94,
  STORAGE_VOL_LOOKUP_BY_NAME: 95,
  STORAGE_VOL_LOOKUP_BY_PATH: 97,
  STORAGE_VOL_GET_INFO: 98,
  STORAGE_VOL_GET_XML_DESC: 99,
  STORAGE_VOL_GET_PATH: 100,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_ABORT_JOB: 164,
  DOMAIN_MIGRATE_SET_MAX_DOWNTIME: 166,
  DOMAIN_MIGRATE_SET_MAX_SPEED: 207,
  /** Opens a stream the client writes the volume's new bytes into. */
  STORAGE_VOL_UPLOAD: 208,
  /** Opens a stream the daemon sends the volume's bytes on. */
  STORAGE_VOL_DOWNLOAD: 209,
  DOMAIN_GET_STATE: 212,
  NODE_GET_CPU_STATS: 227,
  NODE_GET_MEMORY_STATS: 228,
  DOMAIN_UNDEFINE_FLAGS: 231,
  CONNECT_LIST_ALL_DOMAINS: 273,
  CONNECT_LIST_ALL_STORAGE_POOLS: 281,
  DOMAIN_GET_JOB_STATS: 298,
  DOMAIN_MIGRATE_PERFORM3_PARAMS: 305,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  CONNECT_GET_ALL_DOMAIN_STATS: 344,
  DOMAIN_EVENT_CALLBACK_MIGRATION_ITERATION: 359,
  DOMAIN_EVENT_CALLBACK_JOB_COMPLETED: 363,
  DOMAIN_MIGRATE_START_POST_COPY: 364,
  DOMAIN_MIGRATE_GET_MAX_DOWNTIME: 387,
  CONNECT_COMPARE_HYPERVISOR_CPU: 393,
  DOMAIN_START_DIRTY_RATE_CALC: 427,
  DOMAIN_ABORT_JOB_FLAGS: 442,
} as const;
export type ProcedureName = keyof typeof Procedure;

const procedureNames = new Map<number, string>(Object.entries(Procedure).map(([name, n]) => [n, name]));
/** `DOMAIN_GET_JOB_STATS` for 298; `procedure 999` for numbers outside the table. */
export function procedureName(program: number, procedure: number): string {
  if (program === KEEPALIVE_PROGRAM)
    return procedure === KeepaliveProcedure.PING ? 'KEEPALIVE_PING' : 'KEEPALIVE_PONG';
  return procedureNames.get(procedure) ?? `procedure ${procedure}`;
}

/** remote_auth_type */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** virDrvFeature values used with CONNECT_SUPPORTS_FEATURE. */
export const DriverFeature = { PROGRAM_KEEPALIVE: 10 } as const;

/** virDomainState */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;

/** virDomainPausedReason values drover looks at. */
export const DomainPausedReason = { MIGRATION: 2, POSTCOPY: 12, POSTCOPY_FAILED: 13 } as const;

/** virDomainRunningReason values drover looks at. */
export const DomainRunningReason = { POSTCOPY: 10, POSTCOPY_FAILED: 11 } as const;

/** virDomainAbortJobFlagsValues (libvirt >= 8.5) */
export const AbortJobFlags = {
  /** Interrupt a post-copy migration (QEMU pauses it) so that it can be recovered later. */
  POSTCOPY: 1 << 0,
} as const;

/** virDomainEventType (lifecycle events) */
export const LifecycleEventType = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;

/** virDomainEventID */
export const DomainEventId = { LIFECYCLE: 0, MIGRATION_ITERATION: 20, JOB_COMPLETED: 21 } as const;

/** virDomainJobType */
export const JobType = { NONE: 0, BOUNDED: 1, UNBOUNDED: 2, COMPLETED: 3, FAILED: 4, CANCELLED: 5 } as const;

/** virDomainGetJobStatsFlags */
export const JobStatsFlags = { COMPLETED: 1, KEEP_COMPLETED: 2 } as const;

/** virDomainMigrateFlags */
export const MigrateFlags = {
  LIVE: 1 << 0,
  PEER2PEER: 1 << 1,
  TUNNELLED: 1 << 2,
  PERSIST_DEST: 1 << 3,
  UNDEFINE_SOURCE: 1 << 4,
  PAUSED: 1 << 5,
  NON_SHARED_DISK: 1 << 6,
  NON_SHARED_INC: 1 << 7,
  CHANGE_PROTECTION: 1 << 8,
  UNSAFE: 1 << 9,
  OFFLINE: 1 << 10,
  COMPRESSED: 1 << 11,
  ABORT_ON_ERROR: 1 << 12,
  AUTO_CONVERGE: 1 << 13,
  POSTCOPY: 1 << 15,
  TLS: 1 << 16,
  /** Resume a failed post-copy migration (libvirt >= 8.5). */
  POSTCOPY_RESUME: 1 << 19,
} as const;

/** virStoragePoolState (remote_storage_pool_get_info_ret.state) */
export const StoragePoolState = {
  INACTIVE: 0,
  BUILDING: 1,
  RUNNING: 2,
  DEGRADED: 3,
  INACCESSIBLE: 4,
} as const;

/** virConnectListAllStoragePoolsFlags */
export const ListStoragePoolsFlags = { INACTIVE: 1, ACTIVE: 2, PERSISTENT: 4, TRANSIENT: 8 } as const;

/** virStoragePoolBuildFlags */
export const StoragePoolBuildFlags = { NEW: 0, REPAIR: 1, RESIZE: 2, NO_OVERWRITE: 4, OVERWRITE: 8 } as const;

/** virStoragePoolCreateFlags */
export const StoragePoolCreateFlags = {
  WITH_BUILD: 1,
  WITH_BUILD_OVERWRITE: 2,
  WITH_BUILD_NO_OVERWRITE: 4,
} as const;

/** virStorageVolType (remote_storage_vol_get_info_ret.type) */
export const StorageVolType = { FILE: 0, BLOCK: 1, DIR: 2, NETWORK: 3, NETDIR: 4, PLOOP: 5 } as const;

/** virDomainStatsTypes (groups for CONNECT_GET_ALL_DOMAIN_STATS) */
export const DomainStatsTypes = {
  STATE: 1 << 0,
  CPU_TOTAL: 1 << 1,
  BALLOON: 1 << 2,
  VCPU: 1 << 3,
  INTERFACE: 1 << 4,
  BLOCK: 1 << 5,
  PERF: 1 << 6,
  IOTHREAD: 1 << 7,
  MEMORY: 1 << 8,
  DIRTYRATE: 1 << 9,
} as const;

/** virConnectListAllDomainsFlags */
export const ListDomainsFlags = {
  ACTIVE: 1,
  INACTIVE: 2,
  PERSISTENT: 4,
  TRANSIENT: 8,
  RUNNING: 16,
  PAUSED: 32,
  SHUTOFF: 64,
} as const;

/** virConnectGetAllDomainStatsFlags: the ListDomainsFlags filters plus these. */
export const GetAllDomainStatsFlags = {
  /** Report only what can be read without waiting for a domain's job (a busy or stuck monitor). */
  NOWAIT: 1 << 29,
  BACKING: 1 << 30,
  ENFORCE_STATS: 2 ** 31,
} as const;

/** virDomainUndefineFlagsValues */
export const UndefineFlags = {
  MANAGED_SAVE: 1,
  SNAPSHOTS_METADATA: 2,
  NVRAM: 4,
  KEEP_NVRAM: 8,
  CHECKPOINTS_METADATA: 16,
} as const;

/** virDomainXMLFlags */
export const DomainXmlFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;

/** virCPUCompareResult */
export const CpuCompareResult = { ERROR: -1, INCOMPATIBLE: 0, IDENTICAL: 1, SUPERSET: 2 } as const;

/** virDomainDirtyRateStatus (dirtyrate.calc_status) */
export const DirtyRateStatus = { UNSTARTED: 0, MEASURING: 1, MEASURED: 2 } as const;

/** virTypedParameterType */
export const TypedParamType = {
  INT: 1,
  UINT: 2,
  LLONG: 3,
  ULLONG: 4,
  DOUBLE: 5,
  BOOLEAN: 6,
  STRING: 7,
} as const;

// ------------------------------------------------------------------------------------------------ header

export interface PacketHeader {
  program: number;
  version: number;
  procedure: number;
  type: number;
  serial: number;
  status: number;
}

export function writeHeader(w: XdrWriter, h: PacketHeader): void {
  w.uint(h.program).uint(h.version).int(h.procedure).int(h.type).uint(h.serial).int(h.status);
}

export function readHeader(r: XdrReader): PacketHeader {
  return {
    program: r.uint(),
    version: r.uint(),
    procedure: r.int(),
    type: r.int(),
    serial: r.uint(),
    status: r.int(),
  };
}

// ------------------------------------------------------------------------------------------------ structs

/** remote_nonnull_domain */
export interface DomainRef {
  name: string;
  /** 16 raw bytes */
  uuid: Buffer;
  /** -1 when not running */
  id: number;
}

export function writeDomain(w: XdrWriter, d: DomainRef): void {
  if (d.uuid.length !== 16) throw new RangeError(`domain uuid must be 16 bytes, got ${d.uuid.length}`);
  w.string(d.name).fixedOpaque(d.uuid).int(d.id);
}

export function readDomain(r: XdrReader): DomainRef {
  return { name: r.string(REMOTE_STRING_MAX), uuid: r.fixedOpaque(16), id: r.int() };
}

/** remote_nonnull_storage_pool */
export interface StoragePoolRef {
  name: string;
  uuid: Buffer;
}

export function readStoragePool(r: XdrReader): StoragePoolRef {
  return { name: r.string(REMOTE_STRING_MAX), uuid: r.fixedOpaque(16) };
}

/** remote_nonnull_storage_vol */
export interface StorageVolRef {
  pool: string;
  name: string;
  key: string;
}

export function writeStorageVol(w: XdrWriter, v: StorageVolRef): void {
  w.string(v.pool).string(v.name).string(v.key);
}

export function writeStoragePool(w: XdrWriter, p: StoragePoolRef): void {
  if (p.uuid.length !== 16) throw new RangeError(`storage pool uuid must be 16 bytes, got ${p.uuid.length}`);
  w.string(p.name).fixedOpaque(p.uuid);
}

/** remote_storage_pool_get_info_ret: `unsigned char state` travels as a 4-byte XDR word. */
export interface StoragePoolInfo {
  /** virStoragePoolState */
  state: number;
  capacityBytes: bigint;
  allocationBytes: bigint;
  availableBytes: bigint;
}

export function readStoragePoolInfo(r: XdrReader): StoragePoolInfo {
  return {
    state: r.uint(),
    capacityBytes: r.uhyper(),
    allocationBytes: r.uhyper(),
    availableBytes: r.uhyper(),
  };
}

export function readStorageVol(r: XdrReader): StorageVolRef {
  return {
    pool: r.string(REMOTE_STRING_MAX),
    name: r.string(REMOTE_STRING_MAX),
    key: r.string(REMOTE_STRING_MAX),
  };
}

/** remote_error */
export interface RemoteError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
}

export function readRemoteError(r: XdrReader): RemoteError {
  const code = r.int();
  const domain = r.int();
  const message = r.optional((x) => x.string(REMOTE_STRING_MAX));
  const level = r.int();
  // dom, str1..3, int1, int2, net follow; nothing here needs them, and a short error body is still usable.
  return { code, domain, message, level };
}

/** A typed parameter value with its wire type (virTypedParameter). */
export type TypedParam =
  | { field: string; type: 'int'; value: number }
  | { field: string; type: 'uint'; value: number }
  | { field: string; type: 'llong'; value: bigint }
  | { field: string; type: 'ullong'; value: bigint }
  | { field: string; type: 'double'; value: number }
  | { field: string; type: 'boolean'; value: boolean }
  | { field: string; type: 'string'; value: string };

export function writeTypedParam(w: XdrWriter, p: TypedParam): void {
  w.string(p.field);
  switch (p.type) {
    case 'int':
      w.int(TypedParamType.INT).int(p.value);
      break;
    case 'uint':
      w.int(TypedParamType.UINT).uint(p.value);
      break;
    case 'llong':
      w.int(TypedParamType.LLONG).hyper(p.value);
      break;
    case 'ullong':
      w.int(TypedParamType.ULLONG).uhyper(p.value);
      break;
    case 'double':
      w.int(TypedParamType.DOUBLE).double(p.value);
      break;
    case 'boolean':
      w.int(TypedParamType.BOOLEAN).int(p.value ? 1 : 0);
      break;
    case 'string':
      w.int(TypedParamType.STRING).string(p.value);
      break;
  }
}

export function readTypedParam(r: XdrReader): TypedParam {
  const field = r.string(REMOTE_STRING_MAX);
  const type = r.int();
  switch (type) {
    case TypedParamType.INT:
      return { field, type: 'int', value: r.int() };
    case TypedParamType.UINT:
      return { field, type: 'uint', value: r.uint() };
    case TypedParamType.LLONG:
      return { field, type: 'llong', value: r.hyper() };
    case TypedParamType.ULLONG:
      return { field, type: 'ullong', value: r.uhyper() };
    case TypedParamType.DOUBLE:
      return { field, type: 'double', value: r.double() };
    case TypedParamType.BOOLEAN:
      return { field, type: 'boolean', value: r.int() !== 0 };
    case TypedParamType.STRING:
      return { field, type: 'string', value: r.string(REMOTE_STRING_MAX) };
    default:
      throw new LibvirtProtocolError(`typed parameter ${JSON.stringify(field)} has unknown type ${type}`);
  }
}

/** A typed parameter list: each field's minimum wire size is 4 (name length) + 4 (type) + 4 (value). */
export function readTypedParams(r: XdrReader): TypedParam[] {
  return r.array((x) => readTypedParam(x), REMOTE_TYPED_PARAMS_MAX, 12);
}

export function writeTypedParams(w: XdrWriter, params: readonly TypedParam[]): void {
  w.array(params, writeTypedParam);
}

/** remote_node_get_cpu_stats / remote_node_get_memory_stats entries */
export function readNodeStats(r: XdrReader): Map<string, bigint> {
  const entries = r.array(
    (x) => [x.string(REMOTE_STRING_MAX), x.uhyper()] as const,
    REMOTE_NODE_STATS_MAX,
    12,
  );
  return new Map(entries);
}

/** remote_node_get_info_ret: `char model[32]` is an XDR fixed array of 32 chars, each one a 4-byte word. */
export interface NodeInfo {
  model: string;
  memoryKiB: bigint;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

export function readNodeInfo(r: XdrReader): NodeInfo {
  const chars: number[] = [];
  for (let i = 0; i < 32; i++) chars.push(r.int() & 0xff);
  const end = chars.indexOf(0);
  const model = Buffer.from(end === -1 ? chars : chars.slice(0, end)).toString('latin1');
  return {
    model,
    memoryKiB: r.uhyper(),
    cpus: r.int(),
    mhz: r.int(),
    nodes: r.int(),
    sockets: r.int(),
    cores: r.int(),
    threads: r.int(),
  };
}
