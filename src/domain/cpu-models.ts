// Which named CPU models a host can offer a guest: the one table the planner and the simulator both use.
// A guest defined with a named model (QEMU/libvirt's `Haswell`, `Cascadelake-Server`, ...) sees exactly that
// model's features, so it runs on a host whose own model is the same or a later one of the same line that
// keeps every one of its features. Each line below is such a chain in QEMU's own model definitions (each
// model's feature set contains the previous one's, as QEMU's query-cpu-model-expansion reports them): an
// Icelake-Server host runs a Cascadelake-Server guest. Where QEMU's definitions drop a feature the chain
// breaks: Opteron_G4 lacks G3's `monitor`, EPYC lacks G5's `fma4`/`tbm`/`xop`, and the no-TSX
// Cascadelake/Icelake models carry (or lack) mitigation bits the others do not, so those are not chained.
// Intel and AMD are never mixed. Any model not listed matches only itself.

/** Lines of named models, each oldest first; a host runs every model of its line up to its own. */
export const CPU_MODEL_LINES: readonly (readonly string[])[] = [
  [
    'Conroe',
    'Penryn',
    'Nehalem',
    'Westmere',
    'SandyBridge',
    'IvyBridge',
    'Haswell',
    'Broadwell',
    'Skylake-Server',
    'Cascadelake-Server',
    'Icelake-Server',
  ],
  ['Haswell-noTSX', 'Broadwell-noTSX', 'Skylake-Server-noTSX-IBRS', 'Cascadelake-Server-noTSX'],
  ['Opteron_G1', 'Opteron_G2', 'Opteron_G3'],
  ['Opteron_G4', 'Opteron_G5'],
  ['EPYC', 'EPYC-Rome', 'EPYC-Milan'],
];

/** A no-TSX model and the TSX model whose features contain all of its own. */
const WITH_TSX: Readonly<Record<string, string>> = {
  'Haswell-noTSX': 'Haswell',
  'Broadwell-noTSX': 'Broadwell',
  'Icelake-Server-noTSX': 'Icelake-Server',
};

const position = new Map<string, { line: number; rank: number }>();
CPU_MODEL_LINES.forEach((line, i) => line.forEach((model, rank) => position.set(model, { line: i, rank })));

/** True when a host whose CPU is `hostModel` can run a guest defined with the named model `guestModel`. */
export function canHostCpuModel(hostModel: string, guestModel: string): boolean {
  if (hostModel === guestModel) return true;
  const guest = position.get(guestModel);
  const host = position.get(hostModel);
  if (guest && host && guest.line === host.line && guest.rank <= host.rank) return true;
  // A no-TSX guest on a TSX host of the same generation or later.
  const tsx = WITH_TSX[guestModel];
  if (tsx !== undefined) return canHostCpuModel(hostModel, tsx);
  return false;
}

const ALL_MODELS: readonly string[] = [...CPU_MODEL_LINES.flat(), ...Object.keys(WITH_TSX)];

/** The named guest models a host whose CPU is `hostModel` can run (itself included). */
export function cpuModelsRunnableOn(hostModel: string): string[] {
  const runnable = ALL_MODELS.filter((model) => canHostCpuModel(hostModel, model));
  return runnable.includes(hostModel) ? runnable : [...runnable, hostModel];
}
