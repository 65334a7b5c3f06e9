// The CPU engine: the TypeScript reference implementation of the engine interface.

export { CpuEngine } from "./cpu_engine.ts";
