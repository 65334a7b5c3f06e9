// The tool version written into plans, checkpoints and logs.

/** harpe's version (kept equal to deno.json's "version"). */
export const VERSION = "0.1.0";
