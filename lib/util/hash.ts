// SHA-256 as lowercase hex: config hashes in plans, tokenizer hashes in token files, kernel cache keys.

/**
 * The SHA-256 digest of `bytes` as 64 lowercase hex digits.
 *
 * @example
 * ```ts
 * const hash = await sha256Hex(await Deno.readFile("model/config.json"));
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
