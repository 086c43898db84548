/**
 * Fixed-capacity ring buffers: the panel keeps the last N records of each kind and nothing more, so
 * a page that streams for hours holds the same memory as one that streamed for a minute.
 */
import { DevtoolsOptionError } from './errors.ts';

function checkCapacity(option: string, capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 1) throw new DevtoolsOptionError(option, `must be an integer ≥ 1, got ${capacity}`);
}

/** A ring of rows with named numeric columns (one Float64Array per column, no per-row objects). */
export class ColumnRing<K extends string> {
  readonly capacity: number;
  private readonly cols: Record<K, Float64Array>;
  private readonly names: readonly K[];
  /** Index the next row is written to. */
  private head = 0;
  private size = 0;
  /** Rows overwritten since the last clear (tells a reader the window no longer starts at the first row). */
  private overwritten = 0;

  constructor(names: readonly K[], capacity: number, option = 'capacity') {
    checkCapacity(option, capacity);
    this.capacity = capacity;
    this.names = names;
    const cols = {} as Record<K, Float64Array>;
    for (const n of names) cols[n] = new Float64Array(capacity);
    this.cols = cols;
  }

  get length(): number {
    return this.size;
  }

  /** Rows dropped because the ring was full. */
  get dropped(): number {
    return this.overwritten;
  }

  push(row: Readonly<Record<K, number>>): void {
    for (const n of this.names) this.cols[n][this.head] = row[n];
    this.head = (this.head + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
    else this.overwritten++;
  }

  /** Physical slot of chronological row i (0 = oldest kept). */
  private slot(i: number): number {
    return (this.head - this.size + i + this.capacity) % this.capacity;
  }

  /** Value of column `name` in chronological row i (0 = oldest kept, length-1 = newest). */
  get(name: K, i: number): number {
    if (i < 0 || i >= this.size) throw new RangeError(`row ${i} outside 0..${this.size - 1}`);
    return this.cols[name][this.slot(i)];
  }

  /** Newest value of a column, or undefined when empty. */
  last(name: K): number | undefined {
    return this.size === 0 ? undefined : this.get(name, this.size - 1);
  }

  /** Chronological copy of one column. */
  read(name: K): number[] {
    const out = new Array<number>(this.size);
    const col = this.cols[name];
    for (let i = 0; i < this.size; i++) out[i] = col[this.slot(i)];
    return out;
  }

  clear(): void {
    this.head = 0;
    this.size = 0;
    this.overwritten = 0;
  }
}

/** A ring of plain numbers (latency samples). */
export class NumberRing {
  private readonly ring: ColumnRing<'v'>;

  constructor(capacity: number, option = 'capacity') {
    this.ring = new ColumnRing(['v'], capacity, option);
  }

  get length(): number {
    return this.ring.length;
  }

  get capacity(): number {
    return this.ring.capacity;
  }

  push(v: number): void {
    this.ring.push({ v });
  }

  /** Chronological copy. */
  values(): number[] {
    return this.ring.read('v');
  }

  clear(): void {
    this.ring.clear();
  }
}
