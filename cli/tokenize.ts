// `harpe tokenize FILES... --tokenizer tokenizer.json -o OUT`: text, Markdown or JSONL into a token file.

import { Command } from "commander";
import { loadTokenizer, tokenizeFiles, writeTokenFile } from "../lib/data/mod.ts";
import { PathError } from "../lib/errors.ts";
import { Progress } from "../lib/util/progress.ts";
import { printJson, runAction } from "./run_action.ts";
import { pathExists } from "../lib/util/files.ts";

/** The `tokenize` command. */
export function tokenizeCommand(): Command {
  return new Command("tokenize")
    .description(
      'Tokenize text (.txt), Markdown (.md) or JSONL (a "text" field per line) into a token file ' +
        "(safetensors: u16/u32 `tokens`, i64 `doc_offsets`; EOS is appended between documents by the loader)",
    )
    .argument("<files...>", "input files; .txt/.md = one document each, .jsonl = one document per line")
    .requiredOption(
      "--tokenizer <path>",
      "tokenizer.json (tokenizer_config.json beside it names the EOS token)",
    )
    .requiredOption("-o, --output <path>", "token file to write (e.g. data/train.tokens)")
    .option("--force", "replace the output if it exists")
    .option("--json", "print the summary as JSON")
    .action(runAction(
      "tokenize",
      async (
        files: string[],
        options: { tokenizer: string; output: string; force?: boolean; json?: boolean },
      ) => {
        if (!options.force && await pathExists(options.output)) {
          throw new PathError(`Output "${options.output}" already exists`, {
            file: options.output,
            hint: "choose another path or pass --force",
          });
        }
        const tokenizer = await loadTokenizer(options.tokenizer);
        let totalBytes = 0;
        for (const f of files) totalBytes += (await Deno.stat(f).catch(() => ({ size: 0 }))).size;
        const started = performance.now();
        const progress = new Progress("tokenize", totalBytes, {
          bytes: true,
          enabled: options.json ? false : undefined,
        });
        const result = await tokenizeFiles(files, tokenizer, {
          onProgress: (bytes, tokens) => {
            const seconds = (performance.now() - started) / 1000;
            progress.set(bytes, `${tokens} tok ${(tokens / Math.max(seconds, 1e-3)).toFixed(0)} tok/s`);
          },
        });
        progress.finish();
        const seconds = (performance.now() - started) / 1000;
        await writeTokenFile(options.output, result, {
          tokenizer: options.tokenizer,
          tokenizerSha256: tokenizer.sha256,
          vocabSize: tokenizer.vocabSize,
          eosId: tokenizer.eosId,
        });
        const summary = {
          output: options.output,
          files: files.length,
          documents: result.docOffsets.length - 1,
          tokens: result.tokens.length,
          bytes: result.bytes,
          seconds: Number(seconds.toFixed(3)),
          tokens_per_s: Math.round(result.tokens.length / Math.max(seconds, 1e-3)),
          vocab_size: tokenizer.vocabSize,
          eos_id: tokenizer.eosId,
          tokenizer_sha256: tokenizer.sha256,
        };
        if (options.json) {
          printJson(summary);
        } else {
          console.log(
            `${summary.output}: ${summary.tokens} tokens in ${summary.documents} documents from ${summary.files} ` +
              `files (${summary.tokens_per_s} tok/s, vocab ${summary.vocab_size}, EOS id ${summary.eos_id})`,
          );
        }
      },
    ));
}
