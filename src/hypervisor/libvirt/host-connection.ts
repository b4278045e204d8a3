// One libvirt connection per host, re-established with exponential back-off after it drops. Event
// registrations are renewed on every new connection so subscribers keep receiving events.
import { LibvirtClient, type ConnectOptions } from '../../libvirt/libvirt-client.js';
import { LibvirtConnectionError } from '../../libvirt/errors.js';

export interface HostConnectionOptions extends ConnectOptions {
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

export class HostConnection {
  private client: LibvirtClient | null = null;
  private connecting: Promise<LibvirtClient> | null = null;
  private failures = 0;
  private nextAttemptAt = 0;
  private lastError: Error | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private wantEvents = false;
  private closed = false;

  constructor(
    readonly hostId: string,
    readonly uri: string,
    private readonly options: HostConnectionOptions,
    /** Called with each new client, before anyone else uses it (wire its events here). */
    private readonly onClient: (client: LibvirtClient) => void,
  ) {}

  /** The connected client; connects (or reconnects) when needed. Fails fast while backing off. */
  async get(): Promise<LibvirtClient> {
    if (this.closed)
      throw new LibvirtConnectionError('libvirt_connection_closed', `${this.hostId}: hypervisor closed`);
    if (this.client && !this.client.closed) return this.client;
    if (this.connecting) return this.connecting;
    const waitMs = this.nextAttemptAt - Date.now();
    if (waitMs > 0)
      throw new LibvirtConnectionError(
        'libvirt_connect_failed',
        `${this.hostId}: not connected (last error: ${this.lastError?.message ?? 'unknown'}); next attempt in ${waitMs} ms`,
        { cause: this.lastError },
      );
    this.connecting = this.connect();
    try {
      return await this.connecting;
    } finally {
      this.connecting = null;
    }
  }

  private async connect(): Promise<LibvirtClient> {
    try {
      const client = await LibvirtClient.connect(this.uri, this.options);
      if (this.closed) {
        await client.close();
        throw new LibvirtConnectionError('libvirt_connection_closed', `${this.hostId}: hypervisor closed`);
      }
      this.failures = 0;
      this.nextAttemptAt = 0;
      this.lastError = null;
      this.client = client;
      client.events.on('close', ({ error }) => this.onClose(client, error));
      this.onClient(client);
      if (this.wantEvents) await client.registerDefaultEvents();
      return client;
    } catch (err) {
      this.failures += 1;
      const delay = Math.min(
        this.options.reconnectMaxMs,
        this.options.reconnectMinMs * 2 ** (this.failures - 1),
      );
      this.nextAttemptAt = Date.now() + delay;
      this.lastError = err instanceof Error ? err : new Error(String(err));
      if (this.wantEvents) this.scheduleRetry(delay);
      throw err;
    }
  }

  private onClose(client: LibvirtClient, error: Error | null): void {
    if (this.client !== client) return;
    this.client = null;
    if (this.closed) return;
    this.lastError = error;
    if (this.wantEvents) this.scheduleRetry(this.options.reconnectMinMs);
  }

  private scheduleRetry(delayMs: number): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.get().catch(() => {
        // get() already scheduled the next attempt with a longer delay
      });
    }, delayMs);
    this.retryTimer.unref();
  }

  /** Keeps the connection up in the background and registers domain events on it. */
  async enableEvents(): Promise<void> {
    if (this.wantEvents) return;
    this.wantEvents = true;
    const client = this.client && !this.client.closed ? this.client : null;
    if (client) await client.registerDefaultEvents();
    else
      await this.get().catch(() => {
        // the background retry keeps trying
      });
  }

  get connected(): boolean {
    return this.client !== null && !this.client.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const client = this.client;
    this.client = null;
    await client?.close();
  }
}
