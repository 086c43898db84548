/**
 * Splitting one iteration into layer-range slices: the iteration's GPU work is a list of parts
 * (one per decoder layer of the inference pass, the sampler, one per fine-tune unit) with
 * predicted costs; `slices` contiguous groups of about equal predicted time are submitted one
 * after the other, the engine waiting for each before the next, so no submission holds the GPU
 * (and the page's frame) much longer than the budget.
 */

/** Contiguous groups of `costs`' indices, `slices` of them at most, balanced by cost. Pure. */
export function partitionSlices(costs: readonly number[], slices: number): number[][] {
  const n = costs.length;
  if (n === 0) return [];
  const k = Math.max(1, Math.min(Math.floor(slices), n));
  const total = costs.reduce((a, c) => a + Math.max(0, c), 0);
  const groups: number[][] = [];
  let current: number[] = [];
  let acc = 0;
  for (let i = 0; i < n; i++) {
    current.push(i);
    acc += Math.max(0, costs[i]);
    const groupsLeft = k - groups.length - 1; // groups still to open after this one
    const partsLeft = n - i - 1;
    // Close the group at its share of the total, but leave at least one part per remaining group.
    if (groupsLeft > 0 && partsLeft >= groupsLeft && (acc >= (total * (groups.length + 1)) / k || partsLeft === groupsLeft)) {
      groups.push(current);
      current = [];
    }
  }
  if (current.length) groups.push(current);
  return groups;
}
