/** State signatures: the key of the vocabulary's per-state cache (vocab.ts). */
import { NUMBER_MAX_CHARS, type Frame, type Stack, type State } from './frames.ts';

/**
 * A key for what the state's future depends on (mask caches): the frames top to bottom, with
 * counters clamped where larger values behave alike (`horizon`: the longest token's characters).
 */
export function signature(state: State, horizon: number): string {
  const h = horizon + 1;
  const parts: string[] = [];
  for (const top of state) {
    let sig = '';
    for (let s: Stack | null = top; s; s = s.up) sig += frameSig(s.f, h) + '|';
    parts.push(sig);
  }
  return parts.join('&');
}

let nodeIds = new WeakMap<object, number>();
let nextNodeId = 0;
function nodeId(n: object): number {
  let id = nodeIds.get(n);
  if (id === undefined) nodeIds.set(n, (id = nextNodeId++));
  return id;
}
/** Tests: forget node ids (they only need to be stable while a cache lives). */
export function resetNodeIds(): void {
  nodeIds = new WeakMap();
  nextNodeId = 0;
}

function frameSig(f: Frame, h: number): string {
  switch (f.k) {
    case 'root':
      return `r${nodeId(f.node)}:${f.p}:${f.ws}`;
    case 'obj':
      return `o${nodeId(f.node)}:${f.p}:${f.ws}:${[...f.seen].sort((a, b) => a - b).join(',')}:${f.cur}:${JSON.stringify(f.key)}:${JSON.stringify(f.extra)}`;
    case 'arr':
      return `a${nodeId(f.node)}:${f.p}:${f.ws}:${Math.min(f.n, f.node.minItems + 1)}:${Math.min(f.node.maxItems - f.n, h)}`;
    case 'str':
      return `s${f.p}:${f.esc}:${Math.min(f.len, f.node.minLength)}:${Math.min(f.node.maxLength - f.len, h)}`;
    case 'num':
      return `n${f.integer ? 1 : 0}:${f.p}:${Math.min(NUMBER_MAX_CHARS - f.chars, h)}`;
    case 'lit':
      return `l${JSON.stringify(f.texts.map((t) => t.slice(f.pos).join('')))}`; // what is left of each candidate
  }
}
