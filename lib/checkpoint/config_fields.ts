// Typed reads of config.json fields: each read checks presence, type and range, and a bad value becomes
// a ConfigError that names the file and the field, e.g. `config.json: "hidden_size" must be ...`.

import { ConfigError, UnsupportedError } from "../errors.ts";

/** Largest accepted size of any one dimension (vocabulary, hidden size, layers, positions ...). */
export const MAX_DIMENSION = 2 ** 31 - 1;

/** Reads fields of one JSON object (the config, or a nested object such as `rope_parameters`). */
export class ConfigFields {
  /**
   * @param raw the JSON object
   * @param file how errors name the file, e.g. "config.json"
   * @param prefix how errors name this object inside the file, e.g. "rope_parameters." (empty at top level)
   */
  constructor(readonly raw: Record<string, unknown>, readonly file: string, readonly prefix = "") {}

  /** True when the field is present and not null (HF writes `null` for unset optional fields). */
  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  /** The error for a field, in the one message format every config error uses. */
  error(
    field: string,
    problem: string,
    detail: { expected?: unknown; actual?: unknown; hint?: string } = {},
  ) {
    return new ConfigError(`${this.file}: "${this.prefix}${field}" ${problem}`, {
      file: this.file,
      field: this.prefix + field,
      ...detail,
    });
  }

  /**
   * The error for a field whose value harpe does not support, listing the values it does, e.g.
   * `config.json: "hidden_act" is "gelu", which harpe does not support (supported: silu)`.
   */
  unsupported(field: string, values: { actual: string; supported: readonly string[] }): UnsupportedError {
    const { actual, supported } = values;
    return new UnsupportedError(
      `${this.file}: "${this.prefix}${field}" is "${actual}", which harpe does not support`,
      {
        file: this.file,
        field: this.prefix + field,
        expected: supported,
        actual,
        hint: `supported: ${supported.join(", ")}`,
      },
    );
  }

  /** A positive integer (a size or a count), required unless `fallback` is given. */
  positiveInt(field: string, fallback?: number): number {
    const value = this.#value(field, fallback);
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_DIMENSION) {
      throw this.error(field, `must be an integer from 1 to ${MAX_DIMENSION}, got ${JSON.stringify(value)}`, {
        expected: "positive integer",
        actual: value,
      });
    }
    return value;
  }

  /** A finite number > 0 (epsilons, bases), required unless `fallback` is given. */
  positiveNumber(field: string, fallback?: number): number {
    const value = this.#value(field, fallback);
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
      throw this.error(field, `must be a number greater than 0, got ${JSON.stringify(value)}`, {
        expected: "positive number",
        actual: value,
      });
    }
    return value;
  }

  /** A boolean, `fallback` when absent. */
  boolean(field: string, fallback: boolean): boolean {
    const value = this.#value(field, fallback);
    if (typeof value !== "boolean") {
      throw this.error(field, `must be true or false, got ${JSON.stringify(value)}`, {
        expected: "boolean",
        actual: value,
      });
    }
    return value;
  }

  /** A string, required unless `fallback` is given. */
  string(field: string, fallback?: string): string {
    const value = this.#value(field, fallback);
    if (typeof value !== "string") {
      throw this.error(field, `must be a string, got ${JSON.stringify(value)}`, {
        expected: "string",
        actual: value,
      });
    }
    return value;
  }

  /** A nested JSON object, or undefined when absent or null. */
  object(field: string): ConfigFields | undefined {
    if (!this.has(field)) return undefined;
    const value = this.raw[field];
    if (typeof value !== "object" || Array.isArray(value)) {
      throw this.error(field, `must be a JSON object, got ${JSON.stringify(value)}`, {
        expected: "object",
        actual: value,
      });
    }
    return new ConfigFields(value as Record<string, unknown>, this.file, `${this.prefix}${field}.`);
  }

  #value(field: string, fallback: unknown): unknown {
    if (this.has(field)) return this.raw[field];
    if (fallback !== undefined) return fallback;
    throw this.error(field, "is missing", { hint: `add "${field}" to ${this.file}` });
  }
}
