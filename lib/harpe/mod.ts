// HARPE base planning: RoPE math per head, base schedules (uniform, peak-valley, geometric, stages,
// explicit, auto), plans and their YAML form, and HARPE config fields for conversion.

export * from "./rope.ts";
export * from "./uniform.ts";
export * from "./stages.ts";
export * from "./peak_valley.ts";
export * from "./auto.ts";
export * from "./schedule.ts";
export * from "./plan.ts";
export * from "./convert.ts";
