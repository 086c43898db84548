/**
 * A live tally of one device's GPU buffers and query sets: how many are alive and their bytes, by
 * label prefix (the owner that names them: `fwd.x` → fwd, `kv.k[3]` → kv, a dispatch's uniforms
 * `gemv_f32_wg64.params` → params). Always on and cheap (a map insert per creation, a delete per
 * destroy), so tests can prove that what an engine, a model or a trainer made is gone after its
 * destroy(), and the stats stream can show GPU memory by owner.
 *
 * It wraps the device's createBuffer / createQuerySet and each created object's destroy(); a buffer
 * dropped without destroy() stays counted (its memory waits for garbage collection: a leak).
 */

export interface TallyCount {
  buffers: number;
  bytes: number;
}

export interface TallySnapshot extends TallyCount {
  querySets: number;
  /** Live buffers and bytes per label prefix. */
  byPrefix: Record<string, TallyCount>;
  /** The same by owner (ownerOfLabel). */
  byOwner: Record<string, TallyCount>;
}

/**
 * Which owner a buffer's label names. Labels start with their owner's prefix: the model's tensors
 * their checkpoint names (model.*, lm_head.*) and the RoPE table; the engine's arena fwd.*, its
 * sampler, timer and sampling scratch; the KV cache kv.*; the trainer train.* with its optimizer and
 * RoPE-backward table; adapters and the bank lora.*; dispatch uniforms *.params; staging for loads
 * and read-backs. Anything else is 'other' (a test's own buffers, a new owner to name here).
 */
export function ownerOfLabel(label: string): string {
  if (label.endsWith('.params')) return 'uniforms';
  for (const [owner, prefixes] of OWNER_PREFIXES) if (prefixes.some((p) => label.startsWith(p))) return owner;
  return 'other';
}

const OWNER_PREFIXES: [string, string[]][] = [
  ['kv-cache', ['kv.']],
  ['engine', ['fwd.', 'sampler.', 'kind-timer', 'argmax.', 'topk.', 'softmax.', 'profiler']],
  ['trainer', ['train.', 'adamw.', 'rope.negInvFreq', 'attention_train.']],
  ['adapters', ['lora']],
  ['weights', ['model.', 'lm_head', 'rope.invFreq']],
  ['transfers', ['readback', 'load staging']],
];

/** The owner part of a buffer label: what comes before the first '.', '[', ':' or space; dispatch uniforms are 'params'. */
export function labelPrefix(label: string): string {
  if (label.endsWith('.params')) return 'params';
  const m = /^[^.[: ]*/.exec(label);
  return m && m[0] ? m[0] : '(unlabelled)';
}

interface Live {
  prefix: string;
  owner: string;
  bytes: number;
}

export class GpuTally {
  private readonly buffers = new Map<GPUBuffer, Live>();
  private readonly querySets = new Set<GPUQuerySet>();

  /** The tally of `device`, installed on first use (one per device, however many contexts wrap it). */
  static of(device: GPUDevice): GpuTally {
    let t = TALLIES.get(device);
    if (!t) {
      t = new GpuTally();
      t.install(device);
      TALLIES.set(device, t);
    }
    return t;
  }

  private install(device: GPUDevice): void {
    const createBuffer = device.createBuffer.bind(device);
    const createQuerySet = device.createQuerySet.bind(device);
    device.createBuffer = (desc: GPUBufferDescriptor): GPUBuffer => {
      const b = createBuffer(desc);
      const label = desc.label ?? '';
      this.buffers.set(b, { prefix: labelPrefix(label), owner: ownerOfLabel(label), bytes: desc.size });
      const destroy = b.destroy.bind(b);
      b.destroy = () => {
        this.buffers.delete(b);
        destroy();
      };
      return b;
    };
    device.createQuerySet = (desc: GPUQuerySetDescriptor): GPUQuerySet => {
      const q = createQuerySet(desc);
      this.querySets.add(q);
      const destroy = q.destroy.bind(q);
      q.destroy = () => {
        this.querySets.delete(q);
        destroy();
      };
      return q;
    };
  }

  /** Live buffers and bytes now, in total and by label prefix. */
  snapshot(): TallySnapshot {
    const byPrefix: Record<string, TallyCount> = {};
    const byOwner: Record<string, TallyCount> = {};
    let bytes = 0;
    const add = (into: Record<string, TallyCount>, k: string, n: number) => {
      const e = (into[k] ??= { buffers: 0, bytes: 0 });
      e.buffers++;
      e.bytes += n;
    };
    for (const { prefix, owner, bytes: n } of this.buffers.values()) {
      add(byPrefix, prefix, n);
      add(byOwner, owner, n);
      bytes += n;
    }
    return { buffers: this.buffers.size, bytes, querySets: this.querySets.size, byPrefix, byOwner };
  }
}

const TALLIES = new WeakMap<GPUDevice, GpuTally>();

/** What changed between two snapshots, per prefix (non-zero entries only): a leak report. */
export function tallyDiff(before: TallySnapshot, after: TallySnapshot): Record<string, TallyCount> {
  const out: Record<string, TallyCount> = {};
  for (const k of new Set([...Object.keys(before.byPrefix), ...Object.keys(after.byPrefix)])) {
    const a = before.byPrefix[k] ?? { buffers: 0, bytes: 0 };
    const b = after.byPrefix[k] ?? { buffers: 0, bytes: 0 };
    if (a.buffers !== b.buffers || a.bytes !== b.bytes) out[k] = { buffers: b.buffers - a.buffers, bytes: b.bytes - a.bytes };
  }
  return out;
}
