// Typed errors for bad input. Each carries data (file, tensor, field, expected, actual) and a hint,
// and the CLI maps every one of them to exit code 2 with a one-line message.

/** What an input error is about: where it happened, and what was expected against what was found. */
export interface ErrorDetail {
  file?: string;
  tensor?: string;
  field?: string;
  expected?: unknown;
  actual?: unknown;
  /** How to fix it, appended to the one-line message. */
  hint?: string;
}

function withHint(message: string, detail: ErrorDetail): string {
  return detail.hint ? `${message} (${detail.hint})` : message;
}

/** A file's bytes or structure are malformed (safetensors, JSON, YAML, token files). */
export class FileFormatError extends SyntaxError {
  override name = "FileFormatError";
  constructor(message: string, readonly detail: ErrorDetail = {}) {
    super(withHint(message, detail));
  }
}

/** A configuration (config.json, train.yaml, plan.yaml, CLI flags) is missing a field or holds a wrong value. */
export class ConfigError extends TypeError {
  override name = "ConfigError";
  constructor(message: string, readonly detail: ErrorDetail = {}) {
    super(withHint(message, detail));
  }
}

/** A value is out of range or shapes do not fit together (tensor shapes, head counts, lengths). */
export class ShapeError extends RangeError {
  override name = "ShapeError";
  constructor(message: string, readonly detail: ErrorDetail = {}) {
    super(withHint(message, detail));
  }
}

/** A requested setting is impossible or unsupported (architecture, dtype, refused overwrite). */
export class UnsupportedError extends RangeError {
  override name = "UnsupportedError";
  constructor(message: string, readonly detail: ErrorDetail = {}) {
    super(withHint(message, detail));
  }
}

/** A file or directory the user named does not exist or cannot be used. */
export class PathError extends TypeError {
  override name = "PathError";
  constructor(message: string, readonly detail: ErrorDetail = {}) {
    super(withHint(message, detail));
  }
}

/** True for errors caused by the user's input: the CLI prints their message and exits with code 2. */
export function isInputError(error: unknown): error is
  | FileFormatError
  | ConfigError
  | ShapeError
  | UnsupportedError
  | PathError {
  return error instanceof FileFormatError || error instanceof ConfigError ||
    error instanceof ShapeError || error instanceof UnsupportedError || error instanceof PathError;
}
