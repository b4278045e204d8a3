// How the operator commands reach a running drover: its HTTP API, found from --url/--token, the DROVER_URL /
// DROVER_TOKEN environment, or the daemon's own config file (--config: its api.host/port and first admin
// token). Also the shared error handling: every failure becomes an exit code and a message (JSON with --json).
import type { Command } from 'commander';
import { ValidationError, errorCode, errorMessage } from '../domain/errors.js';
import { loadConfig } from '../service/config.js';
import { EXIT, type ExitCode } from './exit-codes.js';

/**
 * A failure with the exit code it maps to. Its `code` is the API's (a DroverErrorCode, or one the daemon's
 * HTTP layer sent) or the CLI's own, so it is text the CLI prints rather than one of drover's closed codes.
 */
export class CliError extends Error {
  readonly code: string;
  constructor(
    readonly exitCode: ExitCode,
    code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'CliError';
    this.code = code;
  }
}

export interface ConnectionFlags {
  url?: string;
  token?: string;
  config?: string;
  json?: boolean;
}

/** Adds --url, --token, --config and --json to a command that talks to the daemon. */
export function withConnection(cmd: Command): Command {
  return cmd
    .option(
      '--url <url>',
      'drover API base URL (default: $DROVER_URL, or from --config, or http://127.0.0.1:8080)',
    )
    .option(
      '--token <token>',
      'API bearer token (default: $DROVER_TOKEN, or the first admin token of --config)',
    )
    .option('-c, --config <file>', "the daemon's config file, to find its API and a token")
    .option('--json', 'print machine-readable JSON only');
}

const STATUS_EXIT: Record<number, ExitCode> = {
  400: EXIT.badInput,
  401: EXIT.denied,
  403: EXIT.denied,
  404: EXIT.badInput,
  409: EXIT.badInput,
  413: EXIT.badInput,
  415: EXIT.badInput,
};

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    private readonly timeoutMs = 15_000,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers,
        signal: AbortSignal.timeout(this.timeoutMs),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
      throw new CliError(
        EXIT.unreachable,
        'unreachable',
        `cannot reach drover at ${this.baseUrl} (${errorMessage(err)}${cause}); is \`drover serve\` running?`,
      );
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = text === '' ? null : JSON.parse(text);
    } catch {
      throw new CliError(EXIT.failure, 'bad_response', `${method} ${path}: HTTP ${res.status}, not JSON`);
    }
    if (!res.ok) {
      const error =
        typeof data === 'object' && data !== null && 'error' in data
          ? (data.error as { code?: string; message?: string; field?: string })
          : {};
      throw new CliError(
        STATUS_EXIT[res.status] ?? (res.status >= 500 ? EXIT.unreachable : EXIT.failure),
        error.code ?? `http_${res.status}`,
        error.message ?? `HTTP ${res.status}`,
        error.field,
      );
    }
    return data as T;
  }
}

/** Builds the API client from flags, environment, or the daemon's config file. */
export async function connect(
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ApiClient> {
  let url = flags.url ?? env.DROVER_URL;
  let token = flags.token ?? env.DROVER_TOKEN;
  if (flags.config !== undefined && (url === undefined || token === undefined)) {
    const loaded = await loadConfig(flags.config, env);
    const host = ['0.0.0.0', '::'].includes(loaded.config.api.host) ? '127.0.0.1' : loaded.config.api.host;
    url ??= `http://${host.includes(':') ? `[${host}]` : host}:${loaded.config.api.port}`;
    token ??= loaded.tokens.find((t) => t.role === 'admin')?.secret;
  }
  return new ApiClient((url ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''), token);
}

/** Maps any error to its exit code. */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof ValidationError) return EXIT.badInput;
  const code = errorCode(err);
  if (code === 'redis_missing' || code === 'redis_start_failed' || code === 'host_unreachable')
    return EXIT.unreachable;
  return EXIT.failure;
}

/**
 * Runs a command body: prints a failure (as `{ "error": … }` with --json, else `drover: message` on stderr)
 * and sets the exit code. The body returns the exit code of a run that finished.
 */
export async function runCli(json: boolean | undefined, body: () => Promise<ExitCode>): Promise<void> {
  try {
    process.exitCode = await body();
  } catch (err) {
    const exitCode = exitCodeOf(err);
    if (json) {
      const field = err instanceof CliError ? err.field : undefined;
      const issues = err instanceof ValidationError ? err.issues : undefined;
      process.stdout.write(
        `${JSON.stringify({ error: { code: errorCode(err) ?? 'error', message: errorMessage(err), ...(field ? { field } : {}), ...(issues ? { issues } : {}) } }, null, 2)}\n`,
      );
    } else {
      const field = err instanceof CliError && err.field ? ` (${err.field})` : '';
      process.stderr.write(`drover: ${errorMessage(err)}${field}\n`);
    }
    process.exitCode = exitCode;
  }
}
