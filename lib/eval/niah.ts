// The 8 RULER-style needle-in-a-haystack tasks of the HARPE paper's "upgraded NIAH" (Table 4):
// single 1-3, multikey 1-3, multivalue, multiquery. Each builds a prompt (before fitting to a length)
// and the values an answer must contain.

import { ConfigError } from "../errors.ts";
import type { Rng } from "../data/rng.ts";
import { drawNeedles, type NeedleKind } from "./needles.ts";
import { essayHaystack, type Haystack, needleHaystack, noiseHaystack } from "./haystack.ts";
import type { PlacedNeedle, PromptParts } from "./prompt.ts";

/** The task names, in the paper's order. */
export const NIAH_TASKS = [
  "niah_single_1",
  "niah_single_2",
  "niah_single_3",
  "niah_multikey_1",
  "niah_multikey_2",
  "niah_multikey_3",
  "niah_multivalue",
  "niah_multiquery",
] as const;

/** One of {@link NIAH_TASKS}. */
export type NiahTask = typeof NIAH_TASKS[number];

/** What fills the context around the needles. */
export type HaystackKind = "noise" | "essay" | "needles";

/** How a task is made (RULER's settings). */
export interface NiahTaskSpec {
  haystack: HaystackKind;
  keyKind: NeedleKind;
  valueKind: NeedleKind;
  /** Keys with needles in the text (the first `queries` of them are asked for). */
  keys: number;
  /** Values per key. */
  values: number;
  /** Keys asked for. */
  queries: number;
}

/** RULER's configuration of each task. */
export const NIAH_SPECS: Record<NiahTask, NiahTaskSpec> = {
  niah_single_1: {
    haystack: "noise",
    keyKind: "words",
    valueKind: "numbers",
    keys: 1,
    values: 1,
    queries: 1,
  },
  niah_single_2: {
    haystack: "essay",
    keyKind: "words",
    valueKind: "numbers",
    keys: 1,
    values: 1,
    queries: 1,
  },
  niah_single_3: { haystack: "essay", keyKind: "words", valueKind: "uuids", keys: 1, values: 1, queries: 1 },
  niah_multikey_1: {
    haystack: "essay",
    keyKind: "words",
    valueKind: "numbers",
    keys: 4,
    values: 1,
    queries: 1,
  },
  niah_multikey_2: {
    haystack: "needles",
    keyKind: "words",
    valueKind: "numbers",
    keys: 1,
    values: 1,
    queries: 1,
  },
  niah_multikey_3: {
    haystack: "needles",
    keyKind: "uuids",
    valueKind: "uuids",
    keys: 1,
    values: 1,
    queries: 1,
  },
  niah_multivalue: {
    haystack: "essay",
    keyKind: "words",
    valueKind: "numbers",
    keys: 1,
    values: 4,
    queries: 1,
  },
  niah_multiquery: {
    haystack: "essay",
    keyKind: "words",
    valueKind: "numbers",
    keys: 4,
    values: 1,
    queries: 4,
  },
};

/** Most distractor needles a needle haystack draws at once (it is extended lazily as the prompt grows). */
const NEEDLE_HAYSTACK_CHUNK = 256;

/** Checks a task name (e.g. from the command line). */
export function parseNiahTask(name: string): NiahTask {
  if (!(NIAH_TASKS as readonly string[]).includes(name)) {
    throw new ConfigError(`Unknown NIAH task "${name}"`, {
      field: "niah-tasks",
      actual: name,
      hint: `choose from ${NIAH_TASKS.join(", ")}`,
    });
  }
  return name as NiahTask;
}

/** The needle sentence, e.g. "One of the special magic numbers for tender-moon is: 1234567." */
export function niahNeedle(valueKind: NeedleKind, key: string, value: string): string {
  return `One of the special magic ${valueKind} for ${key} is: ${value}.`;
}

function joinKeys(keys: readonly string[]): string {
  return keys.length === 1 ? keys[0] : `${keys.slice(0, -1).join(", ")} and ${keys[keys.length - 1]}`;
}

/** A NIAH case before fitting: the prompt parts, and the values the answer must contain. */
export interface NiahCase {
  parts: PromptParts;
  answers: string[];
}

/**
 * Builds one case of `task`: the first asked-for needle goes to `depth` (0..1), every other needle to a
 * random depth. `sentences` is the real-text corpus for essay haystacks.
 *
 * @example
 * ```ts
 * const { parts, answers } = niahCase("niah_multivalue", new Rng(3), 0.25, sentences);
 * answers.length; // 4
 * ```
 */
export function niahCase(task: NiahTask, rng: Rng, depth: number, sentences: readonly string[]): NiahCase {
  const spec = NIAH_SPECS[task];
  const keys = drawNeedles(rng, spec.keyKind, spec.keys);
  const used = new Set(keys);
  const values = keys.map(() => {
    const drawn = drawNeedles(rng, spec.valueKind, spec.values, used);
    drawn.forEach((value) => used.add(value));
    return drawn;
  });
  const needles: PlacedNeedle[] = [];
  const answers: string[] = [];
  keys.forEach((key, k) =>
    values[k].forEach((value, v) => {
      const first = k === 0 && v === 0;
      needles.push({ text: niahNeedle(spec.valueKind, key, value), depth: first ? depth : rng.nextFloat() });
      if (k < spec.queries) answers.push(value);
    })
  );
  const haystack = makeHaystack(spec, rng, sentences, used);
  const asked = joinKeys(keys.slice(0, spec.queries));
  const noun = spec.valueKind;
  return {
    parts: {
      prefix: `Some special magic ${noun} are hidden within the following text. Make sure to memorize it. ` +
        `I will quiz you about the ${noun} afterwards.\n`,
      suffix: `\nWhat are all the special magic ${noun} for ${asked} mentioned in the provided text? ` +
        `The special magic ${noun} for ${asked} mentioned in the provided text are`,
      haystack,
      needles,
    },
    answers,
  };
}

function makeHaystack(
  spec: NiahTaskSpec,
  rng: Rng,
  sentences: readonly string[],
  used: Set<string>,
): Haystack {
  if (spec.haystack === "noise") return noiseHaystack();
  if (spec.haystack === "essay") return essayHaystack(sentences, rng.nextBelow(sentences.length));
  const pending: string[] = [];
  return needleHaystack(() => {
    if (pending.length === 0) {
      const keys = drawNeedles(rng, spec.keyKind, NEEDLE_HAYSTACK_CHUNK, used);
      keys.forEach((key) => used.add(key));
      const values = drawNeedles(rng, spec.valueKind, NEEDLE_HAYSTACK_CHUNK, used);
      values.forEach((value) => used.add(value));
      keys.forEach((key, i) => pending.push(niahNeedle(spec.valueKind, key, values[i])));
    }
    return pending.shift()!;
  });
}
