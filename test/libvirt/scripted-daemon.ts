// A scripted libvirt daemon on a real unix socket: it speaks enough of the remote protocol for
// LibvirtHypervisor's location, job and migration calls over a small table of domains, and lets a test
// replace the answer to any procedure (hold it, answer an error, change the table first). Timing races
// with the end of a migration become deterministic: the test decides which answer comes first. Like
// libvirtd (max_client_requests, 5 by default), it works on at most 5 calls of one connection at once and
// reads nothing more from that connection until one of them is answered.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uuidFromString } from '../../src/libvirt/libvirt-client.js';
import { encodePacket, PacketDecoder, type Packet } from '../../src/libvirt/packet-decoder.js';
import {
  DomainState,
  ListDomainsFlags,
  MessageStatus,
  MessageType,
  Procedure,
  REMOTE_PROGRAM,
  readDomain,
  writeDomain,
  writeTypedParams,
  type DomainRef,
  type TypedParam,
} from '../../src/libvirt/remote-protocol.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

export interface ScriptedDomain {
  name: string;
  uuid: string;
  /** virDomainState */
  state: number;
  persistent: boolean;
  /** virDomainJobType of the current job and its figures. */
  job: { type: number; params: TypedParam[] };
  /** What GET_JOB_STATS with the COMPLETED flag answers (null: no completed job). */
  completed: TypedParam[] | null;
}

/** One call the daemon received, with the means to answer it. */
export interface ScriptedCall {
  procedure: number;
  args: XdrReader;
  reply(body?: XdrWriter): void;
  error(virCode: number, message: string): void;
}

/** A handler answers the call (now or later) and returns true, or returns false for the default answer. */
export type ScriptedHandler = (call: ScriptedCall) => boolean;

const VIR_ERR_NO_DOMAIN = 42;

export class ScriptedDaemon {
  readonly domains = new Map<string, ScriptedDomain>();
  /** Every call received, in order (procedure numbers). */
  readonly calls: number[] = [];
  /** Calls received and not answered yet. */
  pending = 0;
  /** Calls of one connection the daemon works on at once (libvirtd's max_client_requests). */
  maxClientRequests = 5;
  private readonly handlers = new Map<number, ScriptedHandler>();
  private readonly sockets = new Set<Socket>();
  private server: Server | null = null;
  private dir: string | null = null;
  path = '';

  get uri(): string {
    return `qemu+unix:///system?socket=${this.path}`;
  }

  async start(): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), 'drover-scripted-'));
    this.path = join(this.dir, 'sock');
    this.server = createServer((s) => this.attach(s));
    const server = this.server;
    await new Promise<void>((r) => server.listen(this.path, r));
    return this;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Drops every open connection (a daemon killed), and keeps accepting new ones (restarted). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** Replaces the answer to `procedure` (until `off`). */
  on(procedure: number, handler: ScriptedHandler): void {
    this.handlers.set(procedure, handler);
  }

  off(procedure: number): void {
    this.handlers.delete(procedure);
  }

  count(procedure: number): number {
    return this.calls.filter((p) => p === procedure).length;
  }

  addDomain(d: Partial<ScriptedDomain> & { name: string; uuid: string }): ScriptedDomain {
    const dom: ScriptedDomain = {
      state: DomainState.RUNNING,
      persistent: true,
      job: { type: 0, params: [] },
      completed: null,
      ...d,
    };
    this.domains.set(dom.uuid, dom);
    return dom;
  }

  ref(d: ScriptedDomain): DomainRef {
    return { name: d.name, uuid: uuidFromString(d.uuid), id: d.state === DomainState.SHUTOFF ? -1 : 1 };
  }

  private attach(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new PacketDecoder();
    const conn = { socket, working: 0, waiting: [] as Packet[] };
    socket.on('data', (chunk: Buffer) => {
      for (const p of decoder.push(chunk)) {
        if (p.header.program !== REMOTE_PROGRAM) continue; // keepalive: not offered, never sent
        if (conn.working >= this.maxClientRequests) {
          conn.waiting.push(p);
          socket.pause();
        } else this.receive(conn, p);
      }
    });
  }

  private receive(conn: { socket: Socket; working: number; waiting: Packet[] }, packet: Packet): void {
    const { socket } = conn;
    this.calls.push(packet.header.procedure);
    this.pending++;
    conn.working++;
    let answered = false;
    const send = (status: number, body?: XdrWriter) => {
      if (answered) return;
      answered = true;
      this.pending--;
      conn.working--;
      if (!socket.destroyed)
        socket.write(encodePacket({ ...packet.header, type: MessageType.REPLY, status }, body));
      const next = conn.waiting.shift();
      if (next) this.receive(conn, next);
      else socket.resume();
    };
    const call: ScriptedCall = {
      procedure: packet.header.procedure,
      args: new XdrReader(packet.body),
      reply: (body) => send(MessageStatus.OK, body),
      error: (virCode, message) => {
        const body = new XdrWriter()
          .int(virCode)
          .int(10)
          .optional(message, (w, m) => w.string(m))
          .int(2);
        body.bool(false).bool(false).bool(false).bool(false).int(0).int(0).bool(false);
        send(MessageStatus.ERROR, body);
      },
    };
    const handler = this.handlers.get(call.procedure);
    if (handler?.(call)) return;
    this.answer({ ...call, args: new XdrReader(packet.body) });
  }

  private domainOf(call: ScriptedCall): ScriptedDomain | null {
    const ref = readDomain(call.args);
    const d = this.domains.get(uuidString(ref.uuid)) ?? null;
    if (!d) call.error(VIR_ERR_NO_DOMAIN, `Domain not found: no domain with matching uuid`);
    return d;
  }

  /** The daemon's own answers over its table of domains. */
  private answer(call: ScriptedCall): void {
    const w = new XdrWriter();
    switch (call.procedure) {
      case Procedure.CONNECT_SUPPORTS_FEATURE:
        return call.reply(w.int(0));
      case Procedure.AUTH_LIST:
        return call.reply(w.array([0], (x, t) => x.int(t)));
      case Procedure.CONNECT_OPEN:
      case Procedure.CONNECT_CLOSE:
      case Procedure.DOMAIN_MIGRATE_SET_MAX_DOWNTIME:
      case Procedure.DOMAIN_MIGRATE_SET_MAX_SPEED:
      case Procedure.DOMAIN_ABORT_JOB:
        return call.reply();
      case Procedure.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY:
        return call.reply(w.int(this.calls.length));
      case Procedure.DOMAIN_LOOKUP_BY_UUID: {
        const d = this.domains.get(uuidString(call.args.fixedOpaque(16)));
        if (!d) return call.error(VIR_ERR_NO_DOMAIN, 'Domain not found: no domain with matching uuid');
        writeDomain(w, this.ref(d));
        return call.reply(w);
      }
      case Procedure.DOMAIN_GET_STATE: {
        const d = this.domainOf(call);
        if (d) call.reply(w.int(d.state).int(1));
        return;
      }
      case Procedure.CONNECT_LIST_ALL_DOMAINS: {
        call.args.int();
        const flags = call.args.uint();
        const all = [...this.domains.values()].filter(
          (d) => !(flags & ListDomainsFlags.PERSISTENT) || d.persistent,
        );
        w.array(all, (x, d) => writeDomain(x, this.ref(d))).uint(all.length);
        return call.reply(w);
      }
      case Procedure.DOMAIN_GET_JOB_STATS: {
        const d = this.domainOf(call);
        if (!d) return;
        const completed = (call.args.uint() & 2) !== 0;
        if (completed) {
          w.int(d.completed === null ? 0 : 3);
          writeTypedParams(w, d.completed ?? []);
        } else {
          if (d.state === DomainState.SHUTOFF)
            return call.error(55, 'Requested operation is not valid: domain is not running');
          w.int(d.job.type);
          writeTypedParams(w, d.job.params);
        }
        return call.reply(w);
      }
      case Procedure.CONNECT_GET_ALL_DOMAIN_STATS: {
        const running = [...this.domains.values()].filter((d) => d.state !== DomainState.SHUTOFF);
        w.array(running, (x, d) => {
          writeDomain(x, this.ref(d));
          writeTypedParams(x, [{ field: 'state.state', type: 'int', value: d.state }]);
        });
        return call.reply(w);
      }
      default:
        return call.error(3, `this scripted daemon does not answer procedure ${call.procedure}`);
    }
  }
}

export function uuidString(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Job figures as libvirt reports them (bytes, ms). */
export function jobParams(fields: Record<string, number>): TypedParam[] {
  return Object.entries(fields).map(([field, value]) => ({ field, type: 'ullong', value: BigInt(value) }));
}
