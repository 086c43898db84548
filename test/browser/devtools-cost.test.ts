/**
 * The panel's main-thread cost per second under a simulated engine stream (see
 * src/ui/devtools/cost.ts), printed for docs/BENCHMARKS.md. No timing is asserted: the machine decides.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { measurePanelCost, type MaceDevtoolsElement } from '../../src/ui/devtools/index.ts';

afterEach(() => {
  document.querySelectorAll('mace-devtools').forEach((e) => e.remove());
});

function panel(expanded: boolean): MaceDevtoolsElement {
  const el = document.createElement('mace-devtools');
  el.expanded = expanded;
  el.style.width = '900px';
  document.body.append(el);
  return el;
}

describe('panel cost', () => {
  for (const expanded of [false, true]) {
    it(`${expanded ? 'expanded' : 'collapsed'}, with Performance tracks`, async () => {
      const report = await measurePanelCost(panel(expanded), 3);
      console.log(
        `[panel cost] ${expanded ? 'expanded' : 'collapsed'}: ${report.msPerSecond.toFixed(2)} ms/s ` +
          `(push ${report.pushMsPerSecond.toFixed(2)}, tracks ${report.tracksMsPerSecond.toFixed(2)}, render ${report.renderMsPerSecond.toFixed(2)}; ` +
          `${report.batches} batches, ${report.records} records, ${report.renders} renders in ${report.seconds.toFixed(1)} s)`,
      );
      expect(report.batches).toBeGreaterThan(0);
      expect(report.renders).toBeGreaterThan(0);
      expect(report.expanded).toBe(expanded);
    });
  }
});
