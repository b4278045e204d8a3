// The shipped JSON Schemas (schemas/) are what the zod schemas generate now, and the shipped example config and
// policies validate against them and point editors at them.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generatedSchemaFiles } from '../../src/service/json-schemas.js';

const root = join(import.meta.dirname, '../..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

function validatorFor(schemaPath: string) {
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  return ajv.compile(JSON.parse(read(schemaPath)) as object);
}

/** Documents that must validate against each schema. */
const documents: Record<string, string[]> = {
  'schemas/drover.schema.json': ['drover.example.yaml'],
  'schemas/policy.schema.json': readdirSync(join(root, 'policies'))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `policies/${f}`),
};

describe('shipped JSON Schemas', () => {
  it('equal what the zod schemas generate now (run `npm run schemas` after changing a schema)', () => {
    const generated = generatedSchemaFiles();
    expect(Object.keys(generated).sort()).toEqual(Object.keys(documents).sort());
    for (const [path, text] of Object.entries(generated)) {
      expect(existsSync(join(root, path)), `${path} is missing: run npm run schemas`).toBe(true);
      expect(read(path), `${path} is out of date: run npm run schemas`).toBe(text);
    }
  });

  it('are in the package', () => {
    const pkg = JSON.parse(read('package.json')) as { files: string[] };
    expect(pkg.files).toContain('schemas/');
  });

  it.each(Object.entries(documents))(
    '%s: the shipped examples validate and name it for their editor',
    (schemaPath, files) => {
      const validate = validatorFor(schemaPath);
      expect(files.length).toBeGreaterThan(0);
      for (const file of files) {
        const text = read(file);
        const ok = validate(parse(text));
        expect(ok ? [] : validate.errors, file).toEqual([]);
        const comment = /^# yaml-language-server: \$schema=(\S+)$/m.exec(text);
        expect(comment, `${file} lacks the yaml-language-server comment`).not.toBeNull();
        expect(resolve(dirname(join(root, file)), comment?.[1] ?? '')).toBe(join(root, schemaPath));
      }
    },
  );

  it('refuse what drover refuses: unknown keys, removed keys, wrong types', () => {
    const config = validatorFor('schemas/drover.schema.json');
    const base = parse(read('drover.example.yaml')) as Record<string, unknown>;
    expect(config({ ...base, colour: 'blue' })).toBe(false);
    expect(config({ ...base, schedules: { collect: { intervalS: 15 } } })).toBe(false);
    expect(config({ ...base, leader: { leaseMs: 'long' } })).toBe(false);
    const policy = validatorFor('schemas/policy.schema.json');
    expect(policy({ limits: { maxMovePerRun: 3 } })).toBe(false);
    expect(
      policy({ rules: [{ name: 'a', conditions: { all: [{ fact: 'vm.id' }] }, event: { type: 'pin' } }] }),
    ).toBe(false);
    expect(policy({})).toBe(true);
  });
});
