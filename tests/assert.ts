// Small assertion helpers (JSR's @std/assert is not reachable from our machines).

/** Thrown when an assertion fails. */
export class AssertionError extends Error {
  override name = "AssertionError";
}

function show(value: unknown): string {
  try {
    return typeof value === "string"
      ? JSON.stringify(value)
      : JSON.stringify(value, (_, v) => typeof v === "bigint" ? `${v}n` : v);
  } catch {
    return String(value);
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== "object") return false;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = a as unknown as ArrayLike<unknown>;
    const y = b as unknown as ArrayLike<unknown>;
    if (a.constructor !== b.constructor || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) if (!b.has(k) || !deepEqual(v, b.get(k))) return false;
    return true;
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** Asserts deep equality (typed arrays element by element, Object.is semantics). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!deepEqual(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}expected ${show(expected)}, got ${show(actual)}`,
    );
  }
}

/** Asserts a condition. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Asserts that `text` contains `part`. */
export function assertStringIncludes(text: string, part: string, message?: string): void {
  if (!text.includes(part)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}expected ${show(text)} to include ${show(part)}`,
    );
  }
}

/** Asserts |actual - expected| <= atol + rtol * |expected|. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  atol = 1e-7,
  rtol = 0,
  message?: string,
): void {
  if (!(Math.abs(actual - expected) <= atol + rtol * Math.abs(expected))) {
    throw new AssertionError(`${message ? message + ": " : ""}expected ${expected}, got ${actual}`);
  }
}

/** Asserts that `body` throws (or rejects with) an error of class `ErrorClass`; returns the error. */
export async function assertRejects<E extends Error>(
  body: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  try {
    await body();
  } catch (error) {
    if (!(error instanceof ErrorClass)) {
      throw new AssertionError(
        `expected ${ErrorClass.name}, got ${
          error instanceof Error ? error.name + ": " + error.message : String(error)
        }`,
      );
    }
    if (includes && !error.message.includes(includes)) {
      throw new AssertionError(`expected message to include ${show(includes)}, got ${show(error.message)}`);
    }
    return error;
  }
  throw new AssertionError(`expected ${ErrorClass.name} to be thrown, nothing was thrown`);
}

/** Synchronous form of {@link assertRejects}. */
export function assertThrows<E extends Error>(
  body: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => E,
  includes?: string,
): E {
  try {
    body();
  } catch (error) {
    if (!(error instanceof ErrorClass)) {
      throw new AssertionError(
        `expected ${ErrorClass.name}, got ${
          error instanceof Error ? error.name + ": " + error.message : String(error)
        }`,
      );
    }
    if (includes && !error.message.includes(includes)) {
      throw new AssertionError(`expected message to include ${show(includes)}, got ${show(error.message)}`);
    }
    return error;
  }
  throw new AssertionError(`expected ${ErrorClass.name} to be thrown, nothing was thrown`);
}
