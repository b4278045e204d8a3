import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { freePort, startPrivateRedis } from '../../src/service/private-redis.js';
import { checkPersistence } from '../../src/service/redis-connection.js';
import { cleanPrefix, connectRedis, uniquePrefix } from '../support/redis.js';

describe('private redis-server', () => {
  it('starts on a loopback port in its own directory and removes both on stop', async () => {
    const server = await startPrivateRedis();
    expect(server.url).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = new Redis(server.url);
    await client.set('k', 'v');
    expect(await client.get('k')).toBe('v');
    await client.quit();
    expect(existsSync(server.dir)).toBe(true);
    await server.stop();
    expect(existsSync(server.dir)).toBe(false);
    expect(() => process.kill(server.pid, 0)).toThrow();
  });

  it('keeps data across a restart with append-only persistence on the same directory and port', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-aof-'));
    const first = await startPrivateRedis({ appendOnly: true, dir });
    const client = new Redis(first.url, { maxRetriesPerRequest: null });
    await client.set('plan', 'p-1');
    await first.stop();
    const second = await startPrivateRedis({ appendOnly: true, dir: first.dir, port: first.port });
    expect(await client.get('plan')).toBe('p-1');
    client.disconnect();
    await second.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('tells a Redis that persists from one that does not, and one that hides its CONFIG', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-aof-'));
    const aof = await startPrivateRedis({ appendOnly: true, dir });
    const plain = await startPrivateRedis();
    const a = new Redis(aof.url);
    const p = new Redis(plain.url);
    expect(await checkPersistence(a)).toMatchObject({
      persists: true,
      detail: 'AOF on (appendfsync everysec)',
    });
    expect(await checkPersistence(p)).toMatchObject({ persists: false, detail: /turn on appendonly/ });
    await p.call('CONFIG', 'SET', 'save', '3600 1');
    expect((await checkPersistence(p)).detail).toMatch(/RDB snapshots only/);
    a.disconnect();
    p.disconnect();
    await aof.stop();
    await plain.stop();
    await rm(dir, { recursive: true, force: true });

    // CONFIG renamed away, as some managed Redis services do: drover cannot tell, and says so.
    const port = await freePort();
    const child = spawn('redis-server', [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--rename-command',
      'CONFIG',
      '""',
    ]);
    const hidden = new Redis({ port, host: '127.0.0.1', retryStrategy: (n) => (n > 100 ? null : 50) });
    expect(await checkPersistence(hidden)).toMatchObject({ persists: null, detail: /cannot tell/ });
    hidden.disconnect();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  });

  it('says how to get redis-server when the binary is missing', async () => {
    await expect(startPrivateRedis({ binary: '/nonexistent/redis-server' })).rejects.toThrow(
      /apt-get install redis-server.*REDIS_URL/,
    );
  });
});

describe('test key prefixes', () => {
  it('are unique, hash-tagged, and cleaned up', async () => {
    const a = uniquePrefix('x');
    const b = uniquePrefix('x');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\{drover-x-[0-9a-f]{8}\}$/);
    const redis = connectRedis();
    await redis.set(`${a}:one`, '1');
    await redis.set(`${a}:two`, '2');
    await redis.set(`${b}:one`, '1');
    expect(await cleanPrefix(redis, a)).toBe(2);
    expect(await redis.exists(`${b}:one`)).toBe(1);
    await cleanPrefix(redis, b);
    await redis.quit();
  });
});
