// SVG -> PNG with @resvg/resvg-wasm, offline: the wasm and the DejaVu Sans font are read from the
// project's node_modules (npm packages @resvg/resvg-wasm and dejavu-fonts-ttf), imported lazily.

import { PathError } from "../errors.ts";
import { PLOT_FONT } from "./render.ts";

const WASM_FILE = "@resvg/resvg-wasm/index_bg.wasm";
const FONT_FILE = "dejavu-fonts-ttf/ttf/DejaVuSans.ttf";
/** PNG width is the SVG's width times this (sharper text). */
export const PNG_SCALE = 2;

/** node_modules folders to look in: the project's (beside lib/), then the working directory's. */
function nodeModulesDirs(): string[] {
  const project = new URL("../../node_modules/", import.meta.url);
  const dirs = project.protocol === "file:" ? [decodeURIComponent(project.pathname)] : [];
  dirs.push(`${Deno.cwd()}/node_modules/`);
  return dirs;
}

async function readAsset(relative: string): Promise<Uint8Array> {
  const tried: string[] = [];
  for (const dir of nodeModulesDirs()) {
    const path = dir + relative;
    try {
      return await Deno.readFile(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      tried.push(path);
    }
  }
  throw new PathError(`Cannot find ${relative} for PNG output (looked at ${tried.join(", ")})`, {
    file: relative,
    hint: "run `deno install` in the project, or write the plot as .svg",
  });
}

let ready: Promise<{ font: Uint8Array }> | undefined;

async function init(): Promise<{ font: Uint8Array }> {
  const resvg = await import("@resvg/resvg-wasm");
  const [wasm, font] = await Promise.all([readAsset(WASM_FILE), readAsset(FONT_FILE)]);
  await resvg.initWasm(wasm);
  return { font };
}

/**
 * Rasterizes an SVG string to PNG bytes (text drawn with DejaVu Sans).
 *
 * @example
 * ```ts
 * await Deno.writeFile("plot.png", await toPng(await lineChart(options)));
 * ```
 */
export async function toPng(svg: string): Promise<Uint8Array> {
  ready ??= init();
  let font: Uint8Array;
  try {
    ({ font } = await ready);
  } catch (error) {
    ready = undefined;
    throw error;
  }
  const { Resvg } = await import("@resvg/resvg-wasm");
  const renderer = new Resvg(svg, {
    fitTo: { mode: "zoom", value: PNG_SCALE },
    background: "white",
    font: {
      fontBuffers: [font],
      loadSystemFonts: false,
      defaultFontFamily: PLOT_FONT,
      sansSerifFamily: PLOT_FONT,
    },
  });
  const image = renderer.render();
  const png = image.asPng();
  image.free();
  renderer.free();
  return png;
}
