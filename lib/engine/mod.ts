// The engine interface, its CPU implementation, and the device switch.

export * from "./engine.ts";
export { CpuEngine } from "./cpu/mod.ts";
export { type Device, DEVICES, openEngine } from "./open.ts";
