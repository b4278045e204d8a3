// One RPC connection to a libvirt daemon over any byte stream: calls multiplexed by serial, a timeout on
// every call, write back-pressure, libvirt's keepalive protocol, and server-pushed messages (events).
import type { Duplex } from 'node:stream';
import { LibvirtConnectionError, LibvirtError, LibvirtProtocolError, LibvirtTimeoutError } from './errors.js';
import { encodePacket, PacketDecoder, type Packet } from './packet-decoder.js';
import {
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  KeepaliveProcedure,
  MessageStatus,
  MessageType,
  procedureName,
  readRemoteError,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from './remote-protocol.js';
import { RpcStream, type RpcStreamOptions, type StreamTransport } from './rpc-stream.js';
import { TypedEmitter } from './typed-emitter.js';
import { XdrReader, type XdrWriter } from './xdr.js';

export interface RpcConnectionOptions {
  /** Default timeout of every call (ms). */
  callTimeoutMs?: number;
  /** Send a keepalive PING after this long without hearing from the daemon (ms); 0 disables keepalive. */
  keepaliveIntervalMs?: number;
  /** Declare the daemon dead after this many intervals without any packet from it. */
  keepaliveCount?: number;
  /** Refuse new calls while this many bytes wait to be written (the daemon is not reading). */
  maxQueuedBytes?: number;
}

export interface RpcConnectionEvents extends Record<string, unknown> {
  /** A MESSAGE-type packet of the remote program (an event). */
  message: { procedure: number; body: Buffer };
  /** The connection ended; `error` says why when it was not a clean close. */
  close: { error: LibvirtConnectionError | LibvirtProtocolError | null };
}

interface PendingCall {
  procedure: string;
  resolve: (body: XdrReader) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

export class RpcConnection implements StreamTransport {
  readonly events = new TypedEmitter<RpcConnectionEvents>();
  private readonly decoder = new PacketDecoder();
  private readonly pending = new Map<number, PendingCall>();
  /** Open data streams by the serial of the call that opened them. */
  private readonly streams = new Map<number, RpcStream>();
  /** Writers waiting for the socket to drain (stream data back-pressure). */
  private writableWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private readingPaused = 0;
  private readonly outbox: Buffer[] = [];
  private outboxBytes = 0;
  private blocked = false;
  private nextSerial = 1;
  private closedWith: LibvirtConnectionError | LibvirtProtocolError | null | undefined = undefined;
  private lastHeardAt = Date.now();
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private readonly callTimeoutMs: number;
  private keepaliveIntervalMs: number;
  private readonly keepaliveCount: number;
  private readonly maxQueuedBytes: number;

  constructor(
    private readonly stream: Duplex,
    options: RpcConnectionOptions = {},
  ) {
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.keepaliveIntervalMs = options.keepaliveIntervalMs ?? 5_000;
    this.keepaliveCount = options.keepaliveCount ?? 5;
    this.maxQueuedBytes = options.maxQueuedBytes ?? 64 * 1024 * 1024;
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('drain', () => this.flush());
    stream.on('error', (err: Error) =>
      this.shutdown(
        new LibvirtConnectionError('libvirt_connection_closed', `connection failed: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    stream.on('close', () =>
      this.shutdown(
        new LibvirtConnectionError('libvirt_connection_closed', 'connection closed by the daemon'),
      ),
    );
    stream.on('end', () => {
      this.shutdown(
        new LibvirtConnectionError('libvirt_connection_closed', 'connection closed by the daemon'),
      );
    });
  }

  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Number of calls waiting for a reply. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Starts sending PINGs and watching for a silent daemon (call once the daemon said it speaks keepalive). */
  startKeepalive(intervalMs = this.keepaliveIntervalMs): void {
    this.keepaliveIntervalMs = intervalMs;
    if (intervalMs <= 0 || this.keepaliveTimer || this.closed) return;
    this.lastHeardAt = Date.now();
    this.keepaliveTimer = setInterval(() => this.keepaliveTick(), Math.max(10, Math.floor(intervalMs / 2)));
    this.keepaliveTimer.unref();
  }

  private keepaliveTick(): void {
    const silentMs = Date.now() - this.lastHeardAt;
    if (silentMs >= this.keepaliveIntervalMs * this.keepaliveCount) {
      this.shutdown(
        new LibvirtConnectionError(
          'libvirt_peer_dead',
          `libvirtd sent nothing for ${silentMs} ms (keepalive: ${this.keepaliveCount} x ${this.keepaliveIntervalMs} ms)`,
        ),
      );
      this.stream.destroy();
      return;
    }
    if (silentMs >= this.keepaliveIntervalMs) this.sendKeepalive(KeepaliveProcedure.PING);
  }

  private sendKeepalive(procedure: number): void {
    this.enqueue(
      encodePacket({
        program: KEEPALIVE_PROGRAM,
        version: KEEPALIVE_PROTOCOL_VERSION,
        procedure,
        type: MessageType.MESSAGE,
        serial: 0,
        status: MessageStatus.OK,
      }),
    );
  }

  /**
   * Calls a procedure of the remote program and resolves with a reader over the reply body. Rejects with
   * LibvirtError (the daemon's error), LibvirtTimeoutError, or LibvirtConnectionError.
   */
  call(procedure: number, args?: XdrWriter, options: { timeoutMs?: number } = {}): Promise<XdrReader> {
    return this.send(procedure, args, options, null);
  }

  /**
   * Calls a procedure that opens a data stream (e.g. STORAGE_VOL_UPLOAD / _DOWNLOAD) and resolves with the
   * stream once the daemon accepted the call. Stream packets that follow at once are kept for the stream.
   */
  async openStream(
    procedure: number,
    args?: XdrWriter,
    options: { timeoutMs?: number } & RpcStreamOptions = {},
  ): Promise<RpcStream> {
    const name = procedureName(REMOTE_PROGRAM, procedure);
    let opened: RpcStream | null = null;
    await this.send(procedure, args, options, (serial) => {
      opened = new RpcStream(this, procedure, serial, name, {
        idleTimeoutMs: options.idleTimeoutMs ?? options.timeoutMs ?? this.callTimeoutMs,
        ...(options.highWaterBytes === undefined ? {} : { highWaterBytes: options.highWaterBytes }),
      });
      this.streams.set(serial, opened);
    });
    if (!opened) throw new LibvirtProtocolError(`${name}: no stream was opened`);
    return opened;
  }

  private send(
    procedure: number,
    args: XdrWriter | undefined,
    options: { timeoutMs?: number },
    onSerial: ((serial: number) => void) | null,
  ): Promise<XdrReader> {
    const name = procedureName(REMOTE_PROGRAM, procedure);
    if (this.closedWith !== undefined) {
      return Promise.reject(
        this.closedWith ??
          new LibvirtConnectionError('libvirt_connection_closed', `${name}: connection is closed`),
      );
    }
    if (this.outboxBytes > this.maxQueuedBytes) {
      return Promise.reject(
        new LibvirtConnectionError(
          'libvirt_connection_closed',
          `${name}: ${this.outboxBytes} bytes already wait to be written; the daemon is not reading`,
        ),
      );
    }
    const serial = this.nextSerial;
    this.nextSerial = this.nextSerial >= 0x7fffffff ? 1 : this.nextSerial + 1;
    const packet = encodePacket(
      {
        program: REMOTE_PROGRAM,
        version: REMOTE_PROTOCOL_VERSION,
        procedure,
        type: MessageType.CALL,
        serial,
        status: MessageStatus.OK,
      },
      args,
    );
    const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
    onSerial?.(serial);
    return new Promise<XdrReader>((resolve, reject) => {
      const failStream = (err: Error) => {
        const stream = this.streams.get(serial);
        if (stream) stream.onClose(err);
        reject(err);
      };
      const timer = setTimeout(() => {
        if (this.pending.delete(serial)) failStream(new LibvirtTimeoutError(name, timeoutMs));
      }, timeoutMs);
      this.pending.set(serial, { procedure: name, resolve, reject: failStream, timer });
      this.enqueue(packet);
    });
  }

  // ------------------------------------------------------------------------------ StreamTransport

  sendStreamPacket(procedure: number, serial: number, status: number, body?: Uint8Array): Promise<void> {
    if (this.closedWith !== undefined) {
      return Promise.reject(
        this.closedWith ??
          new LibvirtConnectionError('libvirt_connection_closed', 'stream: connection is closed'),
      );
    }
    this.enqueue(
      encodePacket(
        {
          program: REMOTE_PROGRAM,
          version: REMOTE_PROTOCOL_VERSION,
          procedure,
          type: MessageType.STREAM,
          serial,
          status,
        },
        body,
      ),
    );
    if (!this.blocked) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.writableWaiters.push({ resolve, reject }));
  }

  pauseReading(): void {
    if (this.readingPaused++ === 0) this.stream.pause();
  }

  resumeReading(): void {
    if (this.readingPaused === 0) return;
    if (--this.readingPaused === 0) this.stream.resume();
  }

  releaseStream(serial: number): void {
    this.streams.delete(serial);
  }

  /** Number of open data streams. */
  get openStreams(): number {
    return this.streams.size;
  }

  private enqueue(packet: Buffer): void {
    if (this.closedWith !== undefined) return;
    if (this.blocked) {
      this.outbox.push(packet);
      this.outboxBytes += packet.length;
      return;
    }
    if (!this.stream.write(packet)) this.blocked = true;
  }

  private flush(): void {
    this.blocked = false;
    while (this.outbox.length > 0 && !this.blocked) {
      const packet = this.outbox.shift();
      if (!packet) break;
      this.outboxBytes -= packet.length;
      if (!this.stream.write(packet)) this.blocked = true;
    }
    if (!this.blocked && this.outbox.length === 0 && this.writableWaiters.length > 0) {
      const waiters = this.writableWaiters;
      this.writableWaiters = [];
      for (const w of waiters) w.resolve();
    }
  }

  private onData(chunk: Buffer): void {
    this.lastHeardAt = Date.now();
    let packets: Packet[];
    try {
      packets = this.decoder.push(chunk);
    } catch (err) {
      const protocolError =
        err instanceof LibvirtProtocolError
          ? err
          : new LibvirtProtocolError('undecodable data', { cause: err });
      this.shutdown(protocolError);
      this.stream.destroy();
      return;
    }
    for (const packet of packets) {
      try {
        this.dispatch(packet);
      } catch (err) {
        const protocolError =
          err instanceof LibvirtProtocolError
            ? err
            : new LibvirtProtocolError('undecodable packet', { cause: err });
        this.shutdown(protocolError);
        this.stream.destroy();
        return;
      }
    }
  }

  private dispatch({ header, body }: Packet): void {
    if (header.program === KEEPALIVE_PROGRAM) {
      if (header.procedure === KeepaliveProcedure.PING) this.sendKeepalive(KeepaliveProcedure.PONG);
      return;
    }
    if (header.program !== REMOTE_PROGRAM)
      throw new LibvirtProtocolError(`packet for unknown program 0x${header.program.toString(16)}`);
    if (header.type === MessageType.MESSAGE) {
      this.events.emit('message', { procedure: header.procedure, body });
      return;
    }
    if (header.type === MessageType.STREAM) {
      this.streams.get(header.serial)?.onPacket(header.type, header.status, body);
      return;
    }
    if (header.type !== MessageType.REPLY && header.type !== MessageType.REPLY_WITH_FDS) return;
    const call = this.pending.get(header.serial);
    if (!call) {
      // After its opening reply, a stream's failure may come as a REPLY + ERROR on the stream's serial.
      this.streams.get(header.serial)?.onPacket(header.type, header.status, body);
      return; // otherwise: a reply to a call that already timed out
    }
    this.pending.delete(header.serial);
    clearTimeout(call.timer);
    if (header.status === MessageStatus.OK) {
      call.resolve(new XdrReader(body));
      return;
    }
    if (header.status === MessageStatus.ERROR) {
      let remote;
      try {
        remote = readRemoteError(new XdrReader(body));
      } catch (err) {
        call.reject(new LibvirtProtocolError(`${call.procedure}: undecodable error reply`, { cause: err }));
        return;
      }
      call.reject(
        new LibvirtError({
          virCode: remote.code,
          virDomain: remote.domain,
          level: remote.level,
          message: remote.message ?? 'unknown error',
          procedure: call.procedure,
        }),
      );
      return;
    }
    call.reject(new LibvirtProtocolError(`${call.procedure}: unexpected reply status ${header.status}`));
  }

  private shutdown(reason: LibvirtConnectionError | LibvirtProtocolError | null): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = reason;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = null;
    const error = reason ?? new LibvirtConnectionError('libvirt_connection_closed', 'connection closed');
    for (const [serial, call] of this.pending) {
      clearTimeout(call.timer);
      this.pending.delete(serial);
      call.reject(
        error instanceof LibvirtProtocolError
          ? new LibvirtProtocolError(`${call.procedure}: ${error.message}`, { cause: error })
          : new LibvirtConnectionError(
              error.code as 'libvirt_connection_closed',
              `${call.procedure}: ${error.message}`,
              {
                cause: error,
              },
            ),
      );
    }
    this.outbox.length = 0;
    this.outboxBytes = 0;
    for (const stream of [...this.streams.values()]) stream.onClose(error);
    this.streams.clear();
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const w of waiters) w.reject(error);
    this.events.emit('close', { error: reason });
  }

  /** Closes the stream; calls still waiting fail with a connection error. */
  close(): void {
    this.shutdown(null);
    this.stream.end();
    const timer = setTimeout(() => this.stream.destroy(), 1_000);
    timer.unref();
  }

  /** Tears the stream down at once. */
  destroy(): void {
    this.shutdown(null);
    this.stream.destroy();
  }
}
