/**
 * Text-level stop sequences on streamed text. Text that could still turn into a stop string is
 * held back (the longest suffix that is a prefix of some stop string), so what was emitted never
 * has to be taken back and the stop string itself is never emitted.
 */
export interface StopResult {
  /** Text safe to emit now. */
  emit: string;
  /** A stop string was found: `emit` ends just before it and generation must stop. */
  stopped: boolean;
}

export class StopMatcher {
  private held = '';

  constructor(private readonly stops: readonly string[]) {}

  push(delta: string): StopResult {
    const text = this.held + delta;
    let first = -1;
    for (const s of this.stops) {
      const at = text.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.held = '';
      return { emit: text.slice(0, first), stopped: true };
    }
    const keep = this.partialSuffix(text);
    this.held = text.slice(text.length - keep);
    return { emit: text.slice(0, text.length - keep), stopped: false };
  }

  /** The held-back text, at the end of generation for another reason. */
  flush(): string {
    const out = this.held;
    this.held = '';
    return out;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop string. */
  private partialSuffix(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
