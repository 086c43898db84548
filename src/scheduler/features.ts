/** The cost-model features of single pieces of work (see cost-model.ts). */
import { zeroFeatures, type WorkFeatures } from './cost-model.ts';
import type { UnitView } from './types.ts';

/** Features of running `count` tokens of a sequence whose first `computed` are cached. */
export function entryFeatures(computed: number, count: number): WorkFeatures {
  const f = zeroFeatures();
  f.tokens = count;
  f.rows = 1;
  f.attn = (count * (computed + count)) / 1000;
  return f;
}

/** Features of one fine-tune unit. */
export function unitFeatures(u: UnitView): WorkFeatures {
  const f = zeroFeatures();
  f.ftUnits = 1;
  switch (u.kind) {
    case 'embed':
      break;
    case 'forward':
      f.ftForward = u.tokens;
      break;
    case 'backward':
      f.ftBackward = u.tokens;
      break;
    case 'head':
    case 'head-backward':
      f.ftHead = u.tokens;
      break;
    case 'optimizer':
      f.ftOptimizer = 1;
      break;
  }
  return f;
}
