/**
 * Host bookkeeping of the tokens a request has seen, in the layout the penalties kernel reads:
 * distinct ids in first-seen order, each with its count among GENERATED tokens (prompt tokens
 * have count 0 until generated). Appending keeps old entries in place, so after each sampled token
 * the GPU copy is updated with one small write (a new entry or a changed count), never rewritten.
 */
export interface SeenUpdate {
  /** Entry index that changed. */
  index: number;
  id: number;
  count: number;
  /** A new entry was appended (the row's length grew). */
  appended: boolean;
}

export class SeenTokens {
  readonly ids: number[] = [];
  readonly counts: number[] = [];
  private readonly index = new Map<number, number>();

  constructor(prompt: readonly number[]) {
    for (const id of prompt) this.touch(id, 0);
  }

  get size(): number {
    return this.ids.length;
  }

  /** A generated token. */
  addOutput(id: number): SeenUpdate {
    return this.touch(id, 1);
  }

  /** The entries as [id, count] u32 pairs (the kernel's row layout). */
  pack(): Uint32Array<ArrayBuffer> {
    const out = new Uint32Array(this.ids.length * 2);
    this.ids.forEach((id, i) => {
      out[2 * i] = id;
      out[2 * i + 1] = this.counts[i];
    });
    return out;
  }

  private touch(id: number, add: number): SeenUpdate {
    const at = this.index.get(id);
    if (at !== undefined) {
      this.counts[at] += add;
      return { index: at, id, count: this.counts[at], appended: false };
    }
    const index = this.ids.length;
    this.index.set(id, index);
    this.ids.push(id);
    this.counts.push(add);
    return { index, id, count: add, appended: true };
  }
}
