// Types of bin/args.mjs for the TypeScript tests.
export const USAGE: string;
export const WEIGHT_FORMATS: readonly ('f32' | 'f16' | 'q4')[];
export const SERVE_ABLATIONS: readonly string[];
export const DRIFT_PRESETS: Record<'full' | 'quick', Record<string, number>>;
export class UsageError extends Error {}

type Format = 'f32' | 'f16' | 'q4';
type Runtime = 'node' | 'browser';

export type ParsedArgs =
  | { command: 'help' }
  | { command: 'bench-kernels'; json: boolean; quick: boolean; node: boolean; out: string | undefined }
  | { command: 'bench-all'; out: string; quick: boolean; json: boolean; runtime: Runtime }
  | { command: 'bench-serve'; policies: string[]; ablations: string[]; maxSeqs: number; budgetMultiple: number; json: boolean; out: string | undefined; runtime: Runtime; [field: string]: unknown }
  | {
      command: 'generate';
      model: string;
      prompt: string | undefined;
      messages: { role: string; content: unknown }[] | undefined;
      maxTokens: number | undefined;
      temperature: number | undefined;
      topP: number | undefined;
      seed: number | undefined;
      dtype: Format;
      json: boolean;
      runtime: Runtime;
    }
  | { command: 'bench-decode'; model: string; dtypes: Format[]; batches: number[]; promptTokens: number; tokens: number; plans: ('fused' | 'unfused')[]; json: boolean; out: string | undefined; runtime: Runtime }
  | {
      command: 'train';
      model: string;
      pairs: string | undefined;
      eval: string | undefined;
      stories: boolean;
      steps: number | undefined;
      epochs: number | undefined;
      lr: number | undefined;
      warmup: number | undefined;
      beta: number | undefined;
      rank: number | undefined;
      alpha: number | undefined;
      seed: number | undefined;
      maxLength: number | undefined;
      samples: number | undefined;
      tokens: number | undefined;
      dtype: Format;
      out: string | undefined;
      json: boolean;
      runtime: Runtime;
    };

export function parseArgs(argv: readonly string[]): ParsedArgs;
