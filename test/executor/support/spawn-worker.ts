// Starts test/executor/support/worker-process.ts as a child process (a drover executor worker that can be
// SIGKILLed) and resolves once it says it is ready.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const REPO_ROOT = join(import.meta.dirname, '..', '..', '..');

export function startWorkerProcess(
  redisUrl: string,
  prefix: string,
  linkMiBps: number,
  onSpawn: (child: ChildProcess) => void,
  timeoutMs = 60_000,
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO_ROOT, 'test/executor/support/worker-process.ts'),
      redisUrl,
      prefix,
      String(linkMiBps),
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  onSpawn(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`the worker process was not ready within ${timeoutMs} ms:\n${out}`)),
      timeoutMs,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the worker process exited (${code ?? signal}) before it was ready:\n${out}`));
    });
  });
}
