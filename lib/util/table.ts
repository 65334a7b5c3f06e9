// Plain-text tables for command output: columns padded to their widest cell, numbers right-aligned.

/** Renders rows under a header as aligned text columns. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map((cell) => String(cell)))];
  const widths = header.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  const numeric = header.map((_, column) =>
    rows.length > 0 && rows.every((row) => typeof row[column] === "number")
  );
  const line = (row: string[]) =>
    row.map((cell, column) => numeric[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column]))
      .join("  ").trimEnd();
  return [line(cells[0]), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}
