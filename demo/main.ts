/**
 * The demo page: the chat widget and the performance panel on one engine worker
 * (demo/workspace.ts), which GPU WebGPU gives us (or why it gives none), and a button that runs
 * the kernel benchmark in the page and shows its report.
 */
import { acquireGpu, describeGpu, type GpuContext, type GpuLimits } from '../src/gpu/device.ts';
import { NoAdapterError, WebGpuUnavailableError } from '../src/gpu/errors.ts';
import { benchToMarkdown, runKernelBench } from '../bench/kernels.ts';
import { mountWorkspace } from './workspace.ts';
import { parseMarkdown, type MdBlock } from './markdown.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

/** Limits worth showing, with how to print them. */
const KEY_LIMITS: [keyof GpuLimits, string, (v: number) => string][] = [
  ['maxBufferSize', 'Largest buffer', mib],
  ['maxStorageBufferBindingSize', 'Largest storage binding', mib],
  ['maxComputeWorkgroupStorageSize', 'Workgroup memory', (v) => `${(v / 1024).toFixed(0)} KiB`],
  ['maxComputeInvocationsPerWorkgroup', 'Invocations per workgroup', String],
  ['maxStorageBuffersPerShaderStage', 'Storage buffers per stage', String],
  ['maxComputeWorkgroupsPerDimension', 'Workgroups per dimension', String],
];

function mib(v: number): string {
  return v >= 2 ** 30 ? `${(v / 2 ** 30).toFixed(1)} GiB` : `${(v / 2 ** 20).toFixed(0)} MiB`;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function showGpu(ctx: GpuContext): void {
  $('gpu-status').hidden = true;
  $('gpu-details').hidden = false;
  $('gpu-name').textContent = describeGpu(ctx);
  const features = $('gpu-features');
  for (const [name, on] of Object.entries(ctx.features)) features.append(el('li', name, on ? 'on' : 'off'));
  const table = $('gpu-limits');
  for (const [key, label, fmt] of KEY_LIMITS) {
    const row = el('tr');
    row.append(el('th', label), el('td', fmt(ctx.limits[key])));
    table.append(row);
  }
}

/** A friendly explanation of why there is no GPU, by error type. */
function showNoGpu(e: unknown): void {
  const status = $('gpu-status');
  status.className = 'error';
  if (e instanceof WebGpuUnavailableError) {
    status.textContent = `${e.message}. Try a recent Chrome, Edge or another browser with WebGPU, served over https or localhost.`;
  } else if (e instanceof NoAdapterError) {
    status.textContent = `${e.message}. The browser has WebGPU but offered no GPU: it may be blocklisted or disabled (see chrome://gpu).`;
  } else {
    status.textContent = `Could not start WebGPU: ${e instanceof Error ? e.message : String(e)}`;
  }
}

function renderBlock(b: MdBlock): HTMLElement {
  if (b.kind === 'heading') return el('h4', b.text);
  if (b.kind === 'paragraph') return el('p', b.text, 'report-line');
  const table = el('table', undefined, 'report');
  const head = el('tr');
  for (const h of b.header) head.append(el('th', h));
  table.append(el('thead'), el('tbody'));
  table.tHead!.append(head);
  for (const r of b.rows) {
    const tr = el('tr');
    for (const c of r) tr.append(el('td', c));
    table.tBodies[0].append(tr);
  }
  const wrap = el('div', undefined, 'table-wrap');
  wrap.append(table);
  return wrap;
}

async function runBench(ctx: GpuContext): Promise<void> {
  const button = $<HTMLButtonElement>('bench-run');
  const out = $('bench-output');
  const bar = $<HTMLProgressElement>('bench-bar');
  const message = $('bench-message');
  button.disabled = true;
  out.replaceChildren();
  $('bench-progress').hidden = false;
  try {
    const result = await runKernelBench(ctx, {
      quick: !$<HTMLInputElement>('bench-full').checked,
      onProgress: (text, fraction) => {
        bar.value = fraction;
        message.textContent = text;
      },
    });
    // The report's own title repeats the card's heading: leave it out.
    const blocks = parseMarkdown(benchToMarkdown(result)).filter((b) => !(b.kind === 'heading' && b.level <= 2));
    out.replaceChildren(...blocks.map(renderBlock));
    message.textContent = 'Done.';
  } catch (e) {
    out.replaceChildren(el('p', `The benchmark failed: ${e instanceof Error ? e.message : String(e)}`, 'error'));
  } finally {
    button.disabled = false;
  }
}

async function start(): Promise<void> {
  let ctx: GpuContext;
  try {
    ctx = await acquireGpu({ label: 'mace demo' });
  } catch (e) {
    showNoGpu(e);
    return;
  }
  showGpu(ctx);
  const button = $<HTMLButtonElement>('bench-run');
  button.disabled = false;
  button.addEventListener('click', () => void runBench(ctx));
}

// The chat does not wait for the page's GPU check: the worker acquires its own device and
// reports its own typed errors (the widget shows them).
mountWorkspace();
void start();
