// One libvirt data stream (virStream over the wire). A stream belongs to the call that opened it (e.g.
// STORAGE_VOL_UPLOAD): its packets are of type STREAM and carry that call's procedure and serial.
//   data      STREAM + CONTINUE, the raw bytes (no XDR)
//   eof       STREAM + CONTINUE with no bytes: the daemon has nothing more to send (libvirtd ends a download
//             so); the client then finishes the stream
//   finish    STREAM + OK, empty; the client ends its side with it, and the daemon confirms with the same
//   failure   STREAM + ERROR with a remote_error body; the daemon may also fail a stream with a REPLY +
//             ERROR on the same serial (a failed write or finish)
//   abort     the client sends STREAM + ERROR, empty; the daemon confirms with STREAM + OK
import { LibvirtConnectionError, LibvirtError, LibvirtProtocolError, LibvirtTimeoutError } from './errors.js';
import { MessageStatus, MessageType, readRemoteError } from './remote-protocol.js';
import { XdrReader } from './xdr.js';

/** Largest data packet body this client sends (libvirt's own client uses 256 KiB). */
export const STREAM_CHUNK_BYTES = 256 * 1024;

/** What a stream needs from its connection. */
export interface StreamTransport {
  /** Queues one stream packet; resolves once the connection can take more (write back-pressure). */
  sendStreamPacket(procedure: number, serial: number, status: number, body?: Uint8Array): Promise<void>;
  /** Stops reading from the daemon (every call on this connection waits) until resumeReading(). */
  pauseReading(): void;
  resumeReading(): void;
  /** Forgets the stream (no more packets are routed to it). */
  releaseStream(serial: number): void;
}

export interface RpcStreamOptions {
  /** Give up when the daemon sends nothing for this long while we wait for it (ms). */
  idleTimeoutMs?: number;
  /** Received bytes buffered before the connection stops reading. */
  highWaterBytes?: number;
}

type Phase = 'open' | 'eof' | 'finishing' | 'done' | 'failed';

export class RpcStream {
  private phase: Phase = 'open';
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private paused = false;
  private failure: Error | null = null;
  private waiter: { resolve: () => void; reject: (err: Error) => void } | null = null;
  private readonly idleTimeoutMs: number;
  private readonly highWaterBytes: number;
  /** Bytes received (download) or sent (upload) so far. */
  bytesReceived = 0;
  bytesSent = 0;

  constructor(
    private readonly transport: StreamTransport,
    readonly procedure: number,
    readonly serial: number,
    readonly procedureName: string,
    options: RpcStreamOptions = {},
  ) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.highWaterBytes = options.highWaterBytes ?? 8 * 1024 * 1024;
  }

  /** True once the stream finished, failed or was aborted. */
  get closed(): boolean {
    return this.phase === 'done' || this.phase === 'failed';
  }

  // ------------------------------------------------------------------------------ from the connection

  /** A packet for this stream's serial (type STREAM, or a late REPLY carrying an error). */
  onPacket(type: number, status: number, body: Buffer): void {
    if (this.closed) return;
    if (type === MessageType.STREAM && status === MessageStatus.CONTINUE) {
      if (this.phase !== 'open') {
        this.fail(new LibvirtProtocolError(`${this.procedureName}: stream data after the end of the stream`));
        return;
      }
      if (body.length === 0) {
        this.phase = 'eof'; // end of the daemon's data
        this.wake();
        return;
      }
      this.queue.push(body);
      this.queuedBytes += body.length;
      this.bytesReceived += body.length;
      if (!this.paused && this.queuedBytes >= this.highWaterBytes) {
        this.paused = true;
        this.transport.pauseReading();
      }
      this.wake();
      return;
    }
    if (status === MessageStatus.OK && type === MessageType.STREAM) {
      if (this.phase === 'finishing') {
        this.phase = 'done';
        this.release();
      } else {
        this.phase = 'eof'; // an end of data sent as OK is taken the same way
      }
      this.wake();
      return;
    }
    if (status === MessageStatus.ERROR) {
      let error: Error;
      try {
        const remote = readRemoteError(new XdrReader(body));
        error = new LibvirtError({
          virCode: remote.code,
          virDomain: remote.domain,
          level: remote.level,
          message: remote.message ?? 'stream failed',
          procedure: this.procedureName,
        });
      } catch (err) {
        error = new LibvirtProtocolError(`${this.procedureName}: undecodable stream error`, { cause: err });
      }
      this.fail(error);
      return;
    }
    this.fail(
      new LibvirtProtocolError(
        `${this.procedureName}: unexpected stream packet type ${type} status ${status}`,
      ),
    );
  }

  /** The connection ended. */
  onClose(error: Error | null): void {
    if (this.closed) return;
    this.fail(
      error ??
        new LibvirtConnectionError('libvirt_connection_closed', `${this.procedureName}: connection closed`),
    );
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.phase = 'failed';
    this.failure = error;
    this.release();
    this.wake();
  }

  private release(): void {
    if (this.paused) {
      this.paused = false;
      this.transport.resumeReading();
    }
    this.transport.releaseStream(this.serial);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.resolve();
  }

  /** Waits for the next packet (or the end), at most idleTimeoutMs. */
  private waitForPacket(what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        const error = new LibvirtTimeoutError(`${this.procedureName} (${what})`, this.idleTimeoutMs);
        this.fail(error);
        reject(error);
      }, this.idleTimeoutMs);
      this.waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  // ------------------------------------------------------------------------------ receiving

  /** The next chunk of data, or null at the end of the stream. Throws the stream's error. */
  async read(): Promise<Buffer | null> {
    for (;;) {
      const chunk = this.queue.shift();
      if (chunk) {
        this.queuedBytes -= chunk.length;
        if (this.paused && this.queuedBytes < this.highWaterBytes / 2) {
          this.paused = false;
          this.transport.resumeReading();
        }
        return chunk;
      }
      if (this.failure) throw this.failure;
      if (this.phase !== 'open') return null;
      await this.waitForPacket('waiting for data');
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    for (;;) {
      const chunk = await this.read();
      if (chunk === null) return;
      yield chunk;
    }
  }

  // ------------------------------------------------------------------------------ sending

  /** Sends data (split into packets of at most STREAM_CHUNK_BYTES), waiting while the socket is full. */
  async write(data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length; at += STREAM_CHUNK_BYTES) {
      if (this.failure) throw this.failure;
      if (this.phase !== 'open')
        throw new LibvirtProtocolError(`${this.procedureName}: write after the end of the stream`);
      const part = data.subarray(at, Math.min(data.length, at + STREAM_CHUNK_BYTES));
      await this.transport.sendStreamPacket(this.procedure, this.serial, MessageStatus.CONTINUE, part);
      this.bytesSent += part.length;
    }
  }

  /**
   * Ends the stream successfully: after an upload, the daemon confirms it wrote everything; after a download
   * (at its end), it confirms the transfer. Throws the stream's error if the daemon reports one.
   */
  async finish(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.phase === 'done') return;
    if (this.phase === 'finishing')
      throw new LibvirtProtocolError(`${this.procedureName}: finish called twice`);
    this.phase = 'finishing';
    await this.transport.sendStreamPacket(this.procedure, this.serial, MessageStatus.OK);
    while (!this.closed) await this.waitForPacket('waiting for the end of the stream');
    const failure = this.failureNow();
    if (failure) throw failure;
  }

  /** The stream's error as it is now (packets may have set it while we awaited). */
  private failureNow(): Error | null {
    return this.failure;
  }

  /** Aborts the transfer (the daemon discards it). Never throws; waits briefly for the confirmation. */
  async abort(): Promise<void> {
    if (this.closed) return;
    this.phase = 'finishing';
    try {
      await this.transport.sendStreamPacket(this.procedure, this.serial, MessageStatus.ERROR);
      while (!this.closed) await this.waitForPacket('waiting for the abort to be confirmed');
    } catch {
      // the stream is being given up either way
    }
    if (!this.closed) this.fail(new LibvirtProtocolError(`${this.procedureName}: aborted`));
    this.failure ??= new LibvirtProtocolError(`${this.procedureName}: aborted`);
  }
}
