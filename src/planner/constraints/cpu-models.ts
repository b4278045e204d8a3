// Which named CPU models a host can offer a guest. A guest defined with a named model (QEMU/libvirt's
// `Haswell`, `Cascadelake-Server`, ...) sees exactly that model's features, so it can run on a host whose
// own CPU is that model or a later one of the same line that keeps every one of its features. The lines
// below are deliberately short and conservative: only generations where each later model is a superset
// of the earlier one in QEMU's definitions, TSX and no-TSX variants kept apart (a no-TSX guest runs on a
// TSX host, not the reverse), Intel and AMD never mixed. Any model not listed matches only itself.

/** Each line oldest first. */
const LINES: readonly (readonly string[])[] = [
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
  ],
  ['Haswell-noTSX', 'Broadwell-noTSX', 'Skylake-Server-noTSX', 'Cascadelake-Server-noTSX'],
  ['Opteron_G1', 'Opteron_G2', 'Opteron_G3'],
  ['EPYC', 'EPYC-Rome'],
];

/** A no-TSX model and the model that has the same features plus TSX. */
const WITH_TSX: Readonly<Record<string, string>> = {
  'Haswell-noTSX': 'Haswell',
  'Broadwell-noTSX': 'Broadwell',
  'Skylake-Server-noTSX': 'Skylake-Server',
  'Cascadelake-Server-noTSX': 'Cascadelake-Server',
};

const position = new Map<string, { line: number; rank: number }>();
LINES.forEach((line, i) => line.forEach((model, rank) => position.set(model, { line: i, rank })));

/** True when a host whose CPU is `hostModel` can run a guest defined with the named model `guestModel`. */
export function canHostCpuModel(hostModel: string, guestModel: string): boolean {
  if (hostModel === guestModel) return true;
  const g = position.get(guestModel);
  const h = position.get(hostModel);
  if (g && h && g.line === h.line) return g.rank <= h.rank;
  // A no-TSX guest on a TSX host of the same generation or later.
  const tsx = WITH_TSX[guestModel];
  if (tsx !== undefined) return canHostCpuModel(hostModel, tsx);
  return false;
}
