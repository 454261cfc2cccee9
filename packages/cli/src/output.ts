// How eraftkv-ctl prints: `-w simple` (plain lines, for people and shell pipelines), `-w json`
// (one JSON document, for programs) and `-w table` (aligned columns).

export type WriteOut = 'simple' | 'json' | 'table';
export const writeOutChoices: readonly WriteOut[] = ['simple', 'json', 'table'];

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** Renders rows as an ASCII table with a header. */
export function renderTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+\n`;
  const row = (cells: readonly string[]): string =>
    `|${cells.map((c, i) => ` ${(c ?? '').padEnd(widths[i])} `).join('|')}|\n`;
  return line + row(header) + line + rows.map(row).join('') + line;
}

/** Bytes as text: UTF-8 when it is valid UTF-8, otherwise base64 with a marker. */
export function printable(bytes: Buffer): string {
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? text : `base64:${bytes.toString('base64')}`;
}

/** Bytes for JSON: always with base64 too, so binary data survives. */
export function jsonBytes(bytes: Buffer): { text: string; base64: string } {
  return { text: bytes.toString('utf8'), base64: bytes.toString('base64') };
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
