// Writes a rendered chart to FILE.svg or FILE.png (by extension), atomically.

import { ConfigError } from "../errors.ts";
import { writeFileAtomically, writeTextFileAtomically } from "../util/atomic.ts";
import { toPng } from "./png.ts";

/** Checks that a plot path ends in .svg or .png; returns the format. */
export function plotFormat(path: string): "svg" | "png" {
  const lower = path.toLowerCase();
  if (lower.endsWith(".svg")) return "svg";
  if (lower.endsWith(".png")) return "png";
  throw new ConfigError(`Plot file "${path}" must end in .svg or .png`, {
    field: "plot",
    actual: path,
    hint: "e.g. --plot bases.png",
  });
}

/**
 * Writes an SVG string to `path` as SVG or PNG, chosen by the extension.
 *
 * @example
 * ```ts
 * await writePlot("bases.png", await barChart(options));
 * ```
 */
export async function writePlot(path: string, svg: string): Promise<void> {
  if (plotFormat(path) === "svg") return writeTextFileAtomically(path, svg);
  const png = await toPng(svg);
  await writeFileAtomically(path, (tmp) => Deno.writeFile(tmp, png));
}
