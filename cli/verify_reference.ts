// `harpe verify-reference CASE_DIR [--json] [--device cpu]`: runs the model on a reference case
// (meta.json, checkpoint/, reference.safetensors) and prints the max relative error of the plain and
// HARPE logits, the loss and every gradient; exit 1 when any is over tolerance.

import { Command } from "commander";
import { openEngine } from "../lib/engine/open.ts";
import {
  GRADIENT_TOLERANCE,
  LOGITS_TOLERANCE,
  type ReferenceReport,
  verifyReference,
} from "../lib/model/verify_reference.ts";
import { formatTable } from "../lib/util/table.ts";
import { EXIT_FAILURE, printJson, runAction } from "./run_action.ts";
import { cudaLibDirOption, deviceOption } from "./engine_options.ts";

function formatError(error: number, tolerance: number): string[] {
  return [error.toExponential(2), error <= tolerance ? "ok" : `FAIL (> ${tolerance})`];
}

/** The text report: one row per checked quantity. */
export function formatReport(report: ReferenceReport): string {
  const rows = [
    ["logits (plain RoPE)", ...formatError(report.logitsPlain, LOGITS_TOLERANCE)],
    ["logits (HARPE)", ...formatError(report.logitsHarpe, LOGITS_TOLERANCE)],
    ["loss (HARPE)", ...formatError(report.loss, LOGITS_TOLERANCE)],
    ...Object.entries(report.gradients).map((
      [name, e],
    ) => [`grad ${name}`, ...formatError(e, GRADIENT_TOLERANCE)]),
  ];
  const { actual, expected } = report.lossValue;
  return [
    `case ${report.case}: loss ${actual.toFixed(6)} (reference ${expected.toFixed(6)})`,
    formatTable(["quantity", "max rel. error", "status"], rows),
    report.passed ? "PASSED" : "FAILED",
  ].join("\n");
}

/** The `verify-reference` command. */
export function verifyReferenceCommand(): Command {
  return new Command("verify-reference")
    .description(
      "Check logits, loss and gradients against a reference case (meta.json, checkpoint/, reference.safetensors)",
    )
    .argument("<case-dir>", "the case directory, e.g. fixtures/golden/llama_mha")
    .addOption(deviceOption())
    .addOption(cudaLibDirOption())
    .option("--json", "print the report as JSON")
    .action(
      runAction(
        "verify-reference",
        async (dir: string, options: { device: string; cudaLibDir?: string; json?: boolean }) => {
          const engine = await openEngine(options.device, { cudaLibDir: options.cudaLibDir });
          let report: ReferenceReport;
          try {
            report = await verifyReference(dir, { engine });
          } finally {
            engine.dispose();
          }
          if (options.json) printJson({ ...report, device: engine.name });
          else console.log(formatReport(report));
          if (!report.passed) Deno.exit(EXIT_FAILURE);
        },
      ),
    );
}
