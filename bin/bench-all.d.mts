// Types of bin/bench-all.mjs for the TypeScript tests.
export interface BenchAllPart {
  name: string;
  kind: 'kernels' | 'decode' | 'train-step' | 'serve';
  args: Record<string, unknown>;
  command: string;
}
export function benchAllPlan(quick: boolean): BenchAllPart[];
export function benchAll(opts: { out: string; quick: boolean; runtime: 'node' | 'browser' }, log: (m: string) => void): Promise<{ wallS: number; parts: { name: string; ok: boolean; error: string | null }[] }>;
