// Plots: charts render to well-formed SVG with their text, PNGs carry the PNG signature.

import { assert, assertEquals, assertRejects, assertStringIncludes } from "./assert.ts";
import { ConfigError } from "../lib/errors.ts";
import { barChart, heatmap, lineChart, toPng, writePlot } from "../lib/plot/mod.ts";
import { withTempDir } from "./harness.ts";

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function assertSvg(svg: string): void {
  assert(svg.startsWith("<svg"), "starts with <svg");
  assert(svg.trimEnd().endsWith("</svg>"), "ends with </svg>");
  const doc = svg.match(/<(\w+)[\s>]/g) ?? [];
  assert(doc.length > 5, "has elements");
}

Deno.test("line chart, heatmap and bar chart render to SVG with titles and labels", async () => {
  const line = await lineChart({
    title: "Perplexity by length",
    xLabel: "tokens",
    yLabel: "ppl",
    logX: true,
    series: [{ name: "base", points: [{ x: 1024, y: 9 }, { x: 4096, y: 7 }] }, {
      name: "harpe",
      points: [{ x: 1024, y: 8 }, { x: 4096, y: 6 }],
    }],
  });
  assertSvg(line);
  for (const text of ["Perplexity by length", "tokens", "ppl", "harpe"]) assertStringIncludes(line, text);
  const map = await heatmap({
    title: "NIAH",
    xLabel: "length",
    yLabel: "depth",
    x: ["4k", "8k"],
    y: [0, 50],
    values: [[100, 75], [90, NaN]],
    domain: [0, 100],
  });
  assertSvg(map);
  assertStringIncludes(map, "NIAH");
  assertStringIncludes(map, "75");
  const bars = await barChart({
    title: "bases",
    xLabel: "head",
    yLabel: "base",
    labels: [0, 1],
    values: [1e6, 5e6],
  });
  assertSvg(bars);
  assertStringIncludes(bars, "head");
});

Deno.test("PNG output has the PNG signature and pixels", async () => {
  const svg = await barChart({ title: "b", xLabel: "x", yLabel: "y", labels: ["a"], values: [1] });
  const png = await toPng(svg);
  assertEquals(Array.from(png.slice(0, 8)), PNG_SIGNATURE);
  assert(png.length > 1000, `png is ${png.length} bytes`);
  await withTempDir(async (dir) => {
    await writePlot(`${dir}/p.png`, svg);
    await writePlot(`${dir}/p.svg`, svg);
    assertEquals(Array.from((await Deno.readFile(`${dir}/p.png`)).slice(0, 8)), PNG_SIGNATURE);
    assertEquals(await Deno.readTextFile(`${dir}/p.svg`), svg);
    await assertRejects(() => writePlot(`${dir}/p.gif`, svg), ConfigError, ".svg or .png");
  });
});
