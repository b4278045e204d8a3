// The documentation checked against the repository: every path a doc names exists, every `drover …` command it
// shows parses with the CLI's own parser (every action replaced, so nothing runs), and every config or policy
// key it names is in the schema. In-process and read-only: it takes a second or two.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import type { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/program.js';
import { PolicySchema } from '../../src/domain/policy.js';
import { schemaHasPath } from '../../src/domain/key-suggestions.js';
import { ConfigSchema, REMOVED_CONFIG_FIELDS } from '../../src/service/config.js';

const root = join(import.meta.dirname, '../..');

/** Every Markdown file of the repository but the changelog (which speaks of the past) and dependencies. */
function markdownFiles(dir = root): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || entry.name === 'node_modules' || entry.name === 'dist') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...markdownFiles(path));
    else if (entry.name.endsWith('.md') && entry.name !== 'CHANGELOG.md') out.push(path);
  }
  return out;
}

interface Doc {
  file: string;
  /** Inline code spans outside fenced blocks, with their line. */
  spans: { text: string; line: number }[];
  /** Lines of fenced code blocks, with their line. */
  codeLines: { text: string; line: number }[];
  links: { target: string; line: number }[];
}

function readDoc(file: string): Doc {
  const doc: Doc = { file: relative(root, file), spans: [], codeLines: [], links: [] };
  let fenced = false;
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((text, i) => {
      const line = i + 1;
      if (/^\s*(```|~~~)/.test(text)) {
        fenced = !fenced;
        return;
      }
      if (fenced) {
        doc.codeLines.push({ text, line });
        return;
      }
      for (const m of text.matchAll(/(`+)(.+?)\1/g)) doc.spans.push({ text: m[2]!.trim(), line });
      for (const m of text.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g))
        doc.links.push({ target: m[1]!, line });
    });
  return doc;
}

const docs = markdownFiles().map(readDoc);

// ---------------------------------------------------------------------------------------------------------
// Paths

const TOP_DIRS = ['src', 'test', 'bench', 'docs', 'deploy', 'policies', 'schemas', 'scripts', 'data', 'bin'];
const PATH_WORD = new RegExp(`^(?:\\./)?(?:${TOP_DIRS.join('|')})/[\\w.\\-/*<>{},]*$`);

/** Whether `path` (relative to the repository; `*`, `<placeholder>` and `{a,b}` allowed) names something. */
function exists(path: string, base = root): boolean {
  const brace = /\{([^}]*)\}/.exec(path);
  if (brace) return brace[1]!.split(',').every((alt) => exists(path.replace(brace[0], alt), base));
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  let dirs = [base];
  for (const part of parts) {
    const next: string[] = [];
    for (const dir of dirs) {
      if (!/[*<]/.test(part)) {
        if (existsSync(join(dir, part))) next.push(join(dir, part));
        continue;
      }
      if (!existsSync(dir) || !statSync(dir).isDirectory()) continue;
      const re = new RegExp(`^${part.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\*|<[^>]*>/g, '.*')}$`);
      next.push(
        ...readdirSync(dir)
          .filter((e) => re.test(e))
          .map((e) => join(dir, e)),
      );
    }
    dirs = next;
    if (dirs.length === 0) return false;
  }
  return true;
}

function pathWords(text: string): string[] {
  return text
    .split(/[\s"'`()=,;]+/)
    .map((w) => w.replace(/[.,:;]+$/, '').replace(/:\d+(-\d+)?$/, ''))
    .filter((w) => PATH_WORD.test(w) || /^[A-Z][A-Z_]*\.md$/.test(w));
}

// ---------------------------------------------------------------------------------------------------------
// Commands

/** Words of a shell command line (quotes removed); `[--flag]` stands for the flag, `...` for nothing. */
function words(line: string): string[] {
  const out: string[] = [];
  for (const m of line.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)) {
    const w = m[1] ?? m[2] ?? m[3]!;
    // A redirection ends the command's own words.
    if (m[3] !== undefined && /^\d?>/.test(w)) break;
    const bare = m[3] === undefined ? w : w.replace(/^\[/, '').replace(/\]$/, '');
    if (bare !== '...' && bare !== '…' && bare !== '') out.push(bare);
  }
  return out;
}

/** The drover command lines in a line of shell: after `$`, `npx`, environment assignments; split at `&&`, `;`, `|`. */
function droverCommands(line: string): string[][] {
  const commands: string[][] = [];
  const withoutComment = line.replace(/\s#.*$/, '').replace(/\\$/, '');
  let previousWasDrover = false;
  for (const part of withoutComment.split(/&&|;|\s\|\s/)) {
    let w = words(part.trim().replace(/^\$\s+/, ''));
    while (w.length > 0 && /^[A-Z_][A-Z0-9_]*=/.test(w[0]!)) w = w.slice(1);
    if (w[0] === 'npx' || w[0] === 'sudo') w = w.slice(1);
    if (w[0] === 'drover') {
      commands.push(w.slice(1));
      previousWasDrover = true;
    } else if (previousWasDrover && w[0] !== undefined && isCommandName(w[0])) {
      // `drover migrations | abort VM | doctor`: a list of drover commands, not a pipe.
      commands.push(w);
    } else previousWasDrover = false;
  }
  return commands;
}

const commandNames = new Set(buildProgram().commands.flatMap((c) => [c.name(), ...c.aliases()]));
function isCommandName(word: string): boolean {
  return commandNames.has(word);
}

/** A program whose actions do nothing and whose errors are thrown instead of printed and exited on. */
function inertProgram(): Command {
  const program = buildProgram();
  const quiet = (c: Command) => {
    c.exitOverride();
    c.configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
    c.action(() => undefined);
    for (const sub of c.commands) quiet(sub);
  };
  quiet(program);
  return program;
}

/** Commander's error code for these arguments, or 'ok'. */
async function parseCode(args: string[]): Promise<string> {
  try {
    await inertProgram().parseAsync(args, { from: 'user' });
    return 'ok';
  } catch (err) {
    const code = (err as CommanderError).code;
    if (typeof code !== 'string') throw err;
    return code;
  }
}

const DONE = new Set(['ok', 'commander.helpDisplayed', 'commander.help', 'commander.version']);
/** A command named in running text may leave out its arguments (`drover drain` drains a host). */
const MENTION_OK = new Set([
  ...DONE,
  'commander.missingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.optionMissingArgument',
]);

// ---------------------------------------------------------------------------------------------------------
// Config and policy keys

const TOP_KEYS = new Set([...Object.keys(ConfigSchema.shape), ...Object.keys(PolicySchema.shape)]);
const FILE_NAME = /\.(md|ya?ml|json|ts|js|sh|service|svg)$/;

/** Names spelt like keys that are something else: the audit trail's action names (`plan.approve`). */
const NOT_KEYS = new Set(
  [...readFileSync(join(root, 'src/service/api-server.ts'), 'utf8').matchAll(/action: '([a-z.]+)'/g)].map(
    (m) => m[1]!,
  ),
);

/** `api.tokens[i].file` -> ['api', 'tokens', 'file'], when the first word is a top-level key. */
function keyPath(span: string): string[] | undefined {
  // `path: message` spans are error messages (of snapshots, policies...), not keys to look up.
  if (/:\s/.test(span) || NOT_KEYS.has(span)) return undefined;
  const text = span.replace(/\s*[=:]$/, '');
  if (!/^[a-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*|\[[^\]]*\])+$/.test(text) || FILE_NAME.test(text))
    return undefined;
  const path = text.replace(/\[[^\]]*\]/g, '').split('.');
  return TOP_KEYS.has(path[0]!) && path.length > 1 ? path : undefined;
}

function isKnownKey(path: string[], lineText: string): boolean {
  if (schemaHasPath(ConfigSchema, path) || schemaHasPath(PolicySchema, path)) return true;
  // A removed field may be named where the text says it is removed.
  const removed = Object.keys(REMOVED_CONFIG_FIELDS).some((k) => path.join('.').startsWith(k));
  return removed && /removed|refused|never read/i.test(lineText);
}

describe('documentation', () => {
  it('reads the docs it is meant to check', () => {
    const files = docs.map((d) => d.file);
    for (const f of [
      'README.md',
      'BENCHMARKS.md',
      'docs/api.md',
      'docs/operations.md',
      'docs/runbooks/README.md',
    ])
      expect(files).toContain(f);
  });

  it('names only paths that exist', () => {
    const missing: string[] = [];
    let checked = 0;
    for (const doc of docs) {
      for (const { target, line } of doc.links) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        const path = target.split('#')[0]!;
        checked++;
        if (!exists(path, join(root, dirname(doc.file)))) missing.push(`${doc.file}:${line}: link ${target}`);
      }
      for (const { text, line } of [...doc.spans, ...doc.codeLines]) {
        for (const word of pathWords(text)) {
          checked++;
          if (!exists(word)) missing.push(`${doc.file}:${line}: ${word}`);
        }
      }
    }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThan(100);
    expect(exists('docs/runbooks/<Alert>.md')).toBe(true);
    expect(exists('src/planner/strategies/*/README.md')).toBe(true);
    expect(exists('test/lab-tests/lab.sh')).toBe(false);
  });

  it('shows only drover commands that parse', async () => {
    const bad: string[] = [];
    let checked = 0;
    for (const doc of docs) {
      for (const { text, line } of doc.codeLines) {
        for (const args of droverCommands(text)) {
          checked++;
          const code = await parseCode(args);
          if (!DONE.has(code)) bad.push(`${doc.file}:${line}: drover ${args.join(' ')} (${code})`);
        }
      }
      for (const { text, line } of doc.spans) {
        if (!/^(npx )?drover\s/.test(text)) continue;
        for (const args of droverCommands(text)) {
          checked++;
          const code = await parseCode(args);
          if (!MENTION_OK.has(code)) bad.push(`${doc.file}:${line}: drover ${args.join(' ')} (${code})`);
        }
      }
    }
    expect(bad).toEqual([]);
    expect(checked).toBeGreaterThan(50);
  });

  it('catches a command that does not parse (the check can fail)', async () => {
    expect(await parseCode(['drain', 'kvm-01', '--no-such-flag'])).toBe('commander.unknownOption');
    expect(await parseCode(['no-such-command'])).not.toBe('ok');
    expect(await parseCode(['plan', '--live', '[--drain', 'HOST]'])).not.toBe('ok');
    expect(await parseCode(words('plan --live [--drain HOST]'))).toBe('ok');
    expect(await parseCode(['drain', 'kvm-01', '--json'])).toBe('ok');
  });

  it('names only config and policy keys the schemas have', () => {
    const unknown: string[] = [];
    let checked = 0;
    for (const doc of docs) {
      const lines = readFileSync(join(root, doc.file), 'utf8').split('\n');
      /** The paragraph around a line (to its blank lines). */
      const paragraph = (line: number) => {
        let a = line - 1;
        let b = line - 1;
        while (a > 0 && lines[a - 1]?.trim()) a--;
        while (b < lines.length - 1 && lines[b + 1]?.trim()) b++;
        return lines.slice(a, b + 1).join(' ');
      };
      for (const { text, line } of doc.spans) {
        const path = keyPath(text);
        if (!path) continue;
        checked++;
        if (!isKnownKey(path, paragraph(line))) unknown.push(`${doc.file}:${line}: ${text}`);
      }
    }
    expect(unknown).toEqual([]);
    expect(checked).toBeGreaterThan(30);
    expect(isKnownKey(['limits', 'maxMovePerRun'], '')).toBe(false);
    expect(isKnownKey(['hypervisor', 'hosts', 'bandwidthMiBps'], '')).toBe(true);
  });
});
