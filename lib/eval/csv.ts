// CSV text (RFC 4180): fields with commas, quotes or line breaks are quoted, quotes doubled.

function field(value: string | number | null | undefined): string {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Renders a header and rows as CSV, one line per row, ending with a newline.
 *
 * @example
 * ```ts
 * toCsv(["name", "score"], [["a,b", 1]]); // 'name,score\n"a,b",1\n'
 * ```
 */
export function toCsv(header: string[], rows: (string | number | null | undefined)[][]): string {
  return [header, ...rows].map((row) => row.map(field).join(",")).join("\n") + "\n";
}
