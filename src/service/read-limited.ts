// Reading a file drover was told to read (config, token, cluster spec, snapshot), never more than a limit.
// The size is checked before anything is read, and the read itself stops one byte past the limit, so a
// file that grows meanwhile, a FIFO or a device such as /dev/zero cannot make drover allocate without bound.
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { DroverError } from '../domain/errors.js';

/** Largest file of each kind drover reads (bytes). Documented in docs/threat-model.md. */
export const FILE_LIMITS = {
  /** `drover serve --config FILE` */
  config: 1024 * 1024,
  /** `api.tokens[].file`: one line holding a token. */
  token: 4 * 1024,
  /** `hypervisor.cluster`: the simulator's cluster spec (YAML or JSON). */
  clusterSpec: 64 * 1024 * 1024,
  /** `drover plan --snapshot FILE` (a 100,000-VM snapshot is about 40 MiB of JSON). */
  snapshot: 128 * 1024 * 1024,
} as const;

/** A file over its size limit: nothing of it was used. `field` names where the path came from. */
export class FileTooLarge extends DroverError {
  readonly path: string;
  readonly field: string;
  readonly limitBytes: number;
  /** The message without the field in front (for errors that list the field apart). */
  readonly detail: string;
  constructor(path: string, field: string, what: string, limitBytes: number, sizeBytes: number | null) {
    const size = sizeBytes === null ? 'is' : `is ${sizeBytes} bytes,`;
    const detail = `${what} ${path} ${size} more than the limit of ${limitBytes} bytes`;
    super('file_too_large', `${field}: ${detail}`);
    this.detail = detail;
    this.name = 'FileTooLarge';
    this.path = path;
    this.field = field;
    this.limitBytes = limitBytes;
  }
}

const CHUNK_BYTES = 64 * 1024;

/**
 * Reads `path` as UTF-8 text if it holds at most `limitBytes`; otherwise throws FileTooLarge naming `field`
 * (the config field or CLI flag the path came from) and `what` (a word for the file, e.g. "token file").
 * Other failures (missing file, a directory, no permission) are the file system's errors, unchanged.
 */
export async function readLimited(
  path: string,
  limitBytes: number,
  field: string,
  what: string,
): Promise<string> {
  // Non-blocking, so that opening a FIFO nobody writes to returns at once instead of waiting forever.
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await file.stat();
    if (stat.isFile() && stat.size > limitBytes)
      throw new FileTooLarge(path, field, what, limitBytes, stat.size);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(CHUNK_BYTES, limitBytes + 1 - total);
      const buffer = Buffer.alloc(want);
      const { bytesRead } = await file.read(buffer, 0, want, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > limitBytes) throw new FileTooLarge(path, field, what, limitBytes, null);
      chunks.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await file.close();
  }
}
