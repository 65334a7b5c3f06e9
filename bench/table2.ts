// The paper's Table 2 (HARPE.md: Llama2-7B, 32 heads, R = 128, b_min 1e6, b_max 5e6, stride 3e4) and
// how a base set is scored against it: both sorted, compared position by position.

/** Table 2 of the paper, head 1..32, in tokens (the paper prints millions with two decimals). */
export const PAPER_TABLE2 = [
  1.00,
  1.15,
  1.30,
  1.45,
  2.17,
  2.20,
  2.23,
  2.47,
  2.50,
  2.65,
  2.68,
  2.71,
  2.74,
  2.80,
  2.83,
  2.92,
  3.01,
  3.04,
  3.10,
  3.13,
  3.16,
  3.22,
  3.43,
  3.46,
  3.61,
  3.88,
  4.09,
  4.15,
  4.39,
  4.45,
  4.51,
  4.54,
].map((millions) => Math.round(millions * 1e6));

/** The paper's search setting for Table 2. */
export const TABLE2_SETTING = { bMin: 1e6, bMax: 5e6, stride: 3e4, rotaryDim: 128, heads: 32 };

/** How close a base set is to Table 2: sorted lists compared entry by entry. */
export interface Table2Score {
  /** Entries within one stride (3e4) of the paper's entry at the same sorted position. */
  withinStride: number;
  /** Mean |ours - paper| over the 32 sorted positions, in tokens. */
  meanAbsDiff: number;
}

/** Scores 32 bases against Table 2 (order-free: both lists are sorted first). */
export function scoreTable2(bases: readonly number[]): Table2Score {
  const ours = [...bases].sort((a, b) => a - b);
  let withinStride = 0;
  let total = 0;
  ours.forEach((base, i) => {
    const diff = Math.abs(base - PAPER_TABLE2[i]);
    if (diff <= TABLE2_SETTING.stride) withinStride++;
    total += diff;
  });
  return { withinStride, meanAbsDiff: total / ours.length };
}
