/**
 * Just enough markdown to show the benchmark's report: headings, pipe tables and paragraphs.
 * Parsing is separate from the DOM so Node tests can check it, and the DOM side only ever sets
 * textContent (the report holds adapter strings we do not control).
 */
export type MdBlock =
  | { kind: 'heading'; level: number; text: string }
  | { kind: 'table'; header: string[]; rows: string[][] }
  | { kind: 'paragraph'; text: string };

function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

const isRule = (line: string) => /^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$/.test(line.trim());

export function parseMarkdown(md: string): MdBlock[] {
  const lines = md.split('\n');
  const blocks: MdBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      blocks.push({ kind: 'heading', level: heading[1].length, text: heading[2] });
    } else if (line.trim().startsWith('|') && i + 1 < lines.length && isRule(lines[i + 1])) {
      const header = cells(line);
      const rows: string[][] = [];
      for (i += 2; i < lines.length && lines[i].trim().startsWith('|'); i++) rows.push(cells(lines[i]));
      i--;
      blocks.push({ kind: 'table', header, rows });
    } else if (line.trim()) {
      blocks.push({ kind: 'paragraph', text: line.trim() });
    }
  }
  return blocks;
}
