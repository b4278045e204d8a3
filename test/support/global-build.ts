// vitest global setup (projects `unit` and `lab`): drover laid out as an installed package in a temporary directory —
// bin/drover.js, package.json and dist/ compiled from src/ by the TypeScript compiler, with data/, policies/
// and node_modules/ linked — so that tests that start `drover` as a process run the real entry point on
// plain Node, as an installed drover does, instead of compiling the sources through tsx in every process
// (a second or more of CPU each, tens of processes per run). DROVER_TEST_BIN names it; without it (the
// cluster project, or a lone file run with another config) tests run bin/drover.js of the checkout.
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';

const root = join(import.meta.dirname, '../..');
let pkg: string | undefined;

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path;
  }
}

/** Compiles src/ file by file (no type-check: `make test` runs tsc on its own) into `<pkg>/dist`. */
async function compile(out: string): Promise<void> {
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    esModuleInterop: true,
    resolveJsonModule: true,
  };
  const src = join(root, 'src');
  const writes: Promise<void>[] = [];
  for (const file of sources(src)) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: options,
    });
    const target = join(out, relative(src, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writes.push(writeFile(target, outputText));
  }
  await Promise.all(writes);
}

export async function setup(): Promise<void> {
  pkg = mkdtempSync(join(tmpdir(), 'drover-test-pkg-'));
  mkdirSync(join(pkg, 'bin'));
  copyFileSync(join(root, 'bin/drover.js'), join(pkg, 'bin/drover.js'));
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  for (const dir of ['data', 'policies', 'node_modules']) symlinkSync(join(root, dir), join(pkg, dir));
  await compile(join(pkg, 'dist'));
  process.env.DROVER_TEST_BIN = join(pkg, 'bin/drover.js');
}

export function teardown(): void {
  if (pkg) rmSync(pkg, { recursive: true, force: true });
}
