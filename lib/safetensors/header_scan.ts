// One pass over a header's JSON text for what JSON.parse hides: keys given twice in one object (it keeps
// the last silently) and shape/offset numbers not written as plain integers (it reads 4.0 and 4e0 as 4).

/** What the scan found wrong, if anything; `tensor` is the top-level key it happened under. */
export type HeaderScanIssue =
  | { kind: "duplicate"; tensor: string; key: string }
  | { kind: "non-integer"; tensor: string; field: string; literal: string };

/** Fields whose array entries must be plain non-negative integer literals. */
const INTEGER_FIELDS = new Set(["shape", "data_offsets"]);
const PLAIN_INTEGER = /^(0|[1-9][0-9]*)$/;
/** Characters of scalar tokens: numbers, true, false, null. */
const SCALAR_CHAR = /[-+0-9.a-z]/i;

interface Frame {
  /** Keys seen so far (objects only). */
  keys?: Set<string>;
  expectKey: boolean;
  /** The last key read in this object, or for an array the key it is the value of. */
  key?: string;
}

/** Index just past the JSON string starting at `start` (a '"'); the text is known to be valid JSON. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
  return i + 1;
}

/**
 * Scans header JSON text (already known to parse) for duplicate keys at any depth and for entries of
 * a tensor's `shape` or `data_offsets` that are not plain integer literals. Returns the first issue.
 *
 * @example
 * ```ts
 * scanHeader('{"a":{"shape":[1]},"a":{"shape":[2]}}'); // { kind: "duplicate", tensor: "a", key: "a" }
 * ```
 */
export function scanHeader(text: string): HeaderScanIssue | undefined {
  const stack: Frame[] = [];
  let topKey = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const frame = stack[stack.length - 1];
    if (c === '"') {
      const end = stringEnd(text, i);
      if (frame?.keys && frame.expectKey) {
        const key = JSON.parse(text.slice(i, end)) as string;
        if (stack.length === 1) topKey = key;
        if (frame.keys.has(key)) return { kind: "duplicate", tensor: stack.length === 1 ? key : topKey, key };
        frame.keys.add(key);
        frame.key = key;
        frame.expectKey = false;
      }
      i = end;
      continue;
    }
    if (SCALAR_CHAR.test(c)) {
      let end = i;
      while (end < text.length && SCALAR_CHAR.test(text[end])) end++;
      const literal = text.slice(i, end);
      const field = frame?.key;
      if (
        stack.length === 3 && !frame.keys && field && INTEGER_FIELDS.has(field) &&
        !PLAIN_INTEGER.test(literal)
      ) {
        return { kind: "non-integer", tensor: topKey, field, literal };
      }
      i = end;
      continue;
    }
    if (c === "{") stack.push({ keys: new Set(), expectKey: true });
    else if (c === "[") stack.push({ expectKey: false, key: frame?.keys ? frame.key : undefined });
    else if (c === "}" || c === "]") stack.pop();
    else if (c === "," && frame?.keys) frame.expectKey = true;
    i++;
  }
  return undefined;
}
