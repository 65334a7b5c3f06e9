// Needle keys and values for passkey and NIAH prompts, drawn from a seeded generator: words, numbers
// and UUIDs (RULER's three needle types), never repeating within one prompt.

import { ShapeError } from "../errors.ts";
import type { Rng } from "../data/rng.ts";

/** What a needle's key or value is made of. */
export type NeedleKind = "words" | "numbers" | "uuids";

/** Digits of a NIAH number value (RULER uses 7). */
export const NEEDLE_NUMBER_DIGITS = 7;

/** Adjective-noun pairs build word needles ("tender-moon"), as in RULER: about 10,000 distinct words. */
const ADJECTIVES = [
  "amber",
  "bitter",
  "brave",
  "calm",
  "clever",
  "crimson",
  "dusty",
  "eager",
  "faint",
  "fancy",
  "gentle",
  "golden",
  "hollow",
  "humble",
  "icy",
  "jolly",
  "keen",
  "lively",
  "lucky",
  "mellow",
  "misty",
  "noble",
  "odd",
  "proud",
  "quiet",
  "rapid",
  "rusty",
  "silent",
  "sly",
  "tender",
  "vivid",
  "wild",
  "ancient",
  "bold",
  "brisk",
  "bright",
  "broad",
  "cheerful",
  "chilly",
  "clumsy",
  "cosmic",
  "curious",
  "damp",
  "dark",
  "dizzy",
  "early",
  "elegant",
  "empty",
  "fierce",
  "fluffy",
  "fragile",
  "frosty",
  "fuzzy",
  "giant",
  "glossy",
  "grand",
  "green",
  "grumpy",
  "hasty",
  "heavy",
  "hidden",
  "jagged",
  "kind",
  "large",
  "lazy",
  "little",
  "loud",
  "lonely",
  "lunar",
  "magic",
  "mighty",
  "modest",
  "narrow",
  "nervous",
  "polite",
  "purple",
  "rare",
  "restless",
  "rough",
  "round",
  "royal",
  "rural",
  "sandy",
  "scarlet",
  "shiny",
  "shy",
  "silver",
  "sleepy",
  "slow",
  "smooth",
  "solar",
  "spicy",
  "steady",
  "stormy",
  "sturdy",
  "sunny",
  "swift",
  "tidy",
  "tiny",
  "velvet",
  "warm",
  "wary",
  "weary",
  "windy",
  "wise",
  "witty",
  "young",
];
const NOUNS = [
  "anchor",
  "badger",
  "beacon",
  "canyon",
  "cedar",
  "comet",
  "dragon",
  "falcon",
  "forest",
  "garden",
  "harbor",
  "island",
  "jacket",
  "kettle",
  "lantern",
  "maple",
  "meadow",
  "mirror",
  "moon",
  "orchard",
  "otter",
  "pebble",
  "pepper",
  "planet",
  "river",
  "saddle",
  "tiger",
  "tunnel",
  "valley",
  "violin",
  "walrus",
  "willow",
  "acorn",
  "arrow",
  "banjo",
  "barrel",
  "basket",
  "bison",
  "blossom",
  "bridge",
  "button",
  "cactus",
  "candle",
  "castle",
  "cherry",
  "cloud",
  "clover",
  "compass",
  "copper",
  "cottage",
  "crystal",
  "dolphin",
  "eagle",
  "ember",
  "feather",
  "fern",
  "fiddle",
  "fossil",
  "fountain",
  "glacier",
  "goblet",
  "granite",
  "hammer",
  "hazel",
  "helmet",
  "heron",
  "hornet",
  "iris",
  "ivory",
  "jasmine",
  "jungle",
  "kayak",
  "koala",
  "ladder",
  "lemon",
  "lizard",
  "magnet",
  "marble",
  "meteor",
  "mitten",
  "nectar",
  "needle",
  "oasis",
  "olive",
  "onion",
  "osprey",
  "panther",
  "parrot",
  "pillar",
  "pigeon",
  "puzzle",
  "quartz",
  "quill",
  "rabbit",
  "raven",
  "ribbon",
  "rocket",
  "salmon",
  "sparrow",
  "spider",
  "spruce",
  "summit",
  "thistle",
  "thunder",
  "tulip",
  "turtle",
  "umbrella",
  "wagon",
  "whistle",
];

/** How many distinct word needles exist. */
export const WORD_NEEDLE_COUNT = ADJECTIVES.length * NOUNS.length;

/** Repeated draws in a row that may hit already used needles before the kind counts as exhausted. */
const MAX_DRAW_MISSES = 10_000;

/** A random number with exactly `digits` digits (no leading zero), as a string. */
export function randomNumber(rng: Rng, digits: number): string {
  let text = String(1 + rng.nextBelow(9));
  for (let i = 1; i < digits; i++) text += String(rng.nextBelow(10));
  return text;
}

/** A random version-4 UUID in lowercase hex, e.g. "3f2a9c1e-...". */
export function randomUuid(rng: Rng): string {
  const hex = Array.from({ length: 32 }, () => rng.nextBelow(16).toString(16));
  hex[12] = "4";
  hex[16] = (8 + rng.nextBelow(4)).toString(16);
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random two-word needle, e.g. "tender-moon". */
export function randomWord(rng: Rng): string {
  return `${ADJECTIVES[rng.nextBelow(ADJECTIVES.length)]}-${NOUNS[rng.nextBelow(NOUNS.length)]}`;
}

/**
 * Draws `count` distinct needles of one kind, none of them in `exclude`.
 *
 * @example
 * ```ts
 * drawNeedles(new Rng(1), "numbers", 3); // e.g. ["4817203", "9023311", "1650994"]
 * ```
 */
export function drawNeedles(
  rng: Rng,
  kind: NeedleKind,
  count: number,
  exclude: Set<string> = new Set(),
): string[] {
  const out: string[] = [];
  const seen = new Set(exclude);
  let misses = 0;
  while (out.length < count) {
    const value = kind === "words"
      ? randomWord(rng)
      : kind === "numbers"
      ? randomNumber(rng, NEEDLE_NUMBER_DIGITS)
      : randomUuid(rng);
    if (seen.has(value)) {
      if (++misses > MAX_DRAW_MISSES) {
        throw new ShapeError(`Ran out of distinct ${kind} needles after ${seen.size} drawn`, {
          actual: seen.size,
          hint: "word-keyed needle haystacks hold about 10,000 needles; evaluate shorter lengths",
        });
      }
      continue;
    }
    misses = 0;
    seen.add(value);
    out.push(value);
  }
  return out;
}
