/** The settings of `mace bench drift` (full) and `--quick` that differ; bin/args.mjs keeps a copy (a test keeps them equal). */
export const DRIFT_PRESETS = {
  full: { durationS: 360, evalEveryS: 20, ratePerS: 1, seedsPerPrompt: 8, pairSamplesPerPrompt: 16 },
  quick: { durationS: 72, evalEveryS: 12, ratePerS: 1, seedsPerPrompt: 2, pairSamplesPerPrompt: 8 },
} as const;
