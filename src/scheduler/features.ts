/** The cost-model features of single pieces of work (see cost-model.ts). */
import { zeroFeatures, type WorkFeatures } from './cost-model.ts';
import type { UnitView } from './types.ts';

/**
 * Features of running `count` tokens of a sequence whose first `computed` are cached. `mixedTokens`:
 * the tokens this entry puts in a mixed-mode batch (see WorkFeatures.mixedTokens; mixedFor()).
 */
export function entryFeatures(computed: number, count: number, mixedTokens = 0): WorkFeatures {
  const f = zeroFeatures();
  f.tokens = count;
  f.rows = 1;
  f.attn = (count * (computed + count)) / 1000;
  f.mixedTokens = mixedTokens;
  return f;
}

/**
 * The mixed-mode tokens an entry of `count` tokens adds to a batch that holds `batchTokens` tokens
 * so far (`mixed`: some entry already has more than one token). A batch runs in mixed (prefill)
 * mode as soon as one entry has more than one token (src/engine/batch.ts), and then every row of it
 * goes through the prefill kernels: the entry that switches the batch brings the tokens already
 * there along.
 */
export function mixedFor(count: number, batchTokens: number, mixed: boolean): number {
  if (mixed) return count;
  return count > 1 ? count + batchTokens : 0;
}

/** Features of one fine-tune unit: its compute (multiply-accumulates by kind) and its dispatches. */
export function unitFeatures(u: UnitView): WorkFeatures {
  const f = zeroFeatures();
  f.ftDispatches = u.dispatches;
  f.ftBytes = u.bytes / 1e6;
  f.ftUnits = 1;
  switch (u.kind) {
    case 'embed':
      break;
    case 'forward':
      f.ftForward = u.mmacs;
      break;
    case 'backward':
      f.ftBackward = u.mmacs;
      break;
    case 'head':
    case 'head-backward':
      f.ftHead = u.mmacs;
      break;
    case 'optimizer':
      f.ftOptimizer = 1;
      break;
  }
  return f;
}
