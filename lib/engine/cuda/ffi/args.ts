// Packs kernel arguments for cuLaunchKernel: each argument gets an 8-byte slot in one fixed buffer,
// and `params` holds the slot addresses (the `void** kernelParams` the driver reads at launch).

/** Most arguments one kernel may take. */
export const MAX_KERNEL_ARGS = 32;
const SLOT_BYTES = 8;

/** One kernel argument: a device pointer (bigint), or a number typed as i32, u32 or f32. */
export type KernelArg = bigint | { i32: number } | { f32: number } | { u32: number };

/**
 * Reusable argument buffer. The driver copies the argument values during cuLaunchKernel, so one packer
 * serves every launch.
 *
 * @example
 * ```ts
 * const params = packer.pack([outPtr, inPtr, { i32: n }, { f32: 0.5 }]);
 * driver.launch(fn, [blocks, 1, 1], [256, 1, 1], 0, stream, params);
 * ```
 */
export class ArgPacker {
  private readonly storage = new ArrayBuffer(MAX_KERNEL_ARGS * SLOT_BYTES);
  private readonly u64 = new BigUint64Array(this.storage);
  private readonly view = new DataView(this.storage);
  private readonly addresses = new BigUint64Array(MAX_KERNEL_ARGS);

  constructor() {
    const base = Deno.UnsafePointer.value(Deno.UnsafePointer.of(this.storage));
    for (let i = 0; i < MAX_KERNEL_ARGS; i++) this.addresses[i] = BigInt(base) + BigInt(i * SLOT_BYTES);
  }

  /** Writes `args` into their slots and returns the slot-address array to pass as kernelParams. */
  pack(args: readonly KernelArg[]): BigUint64Array {
    if (args.length > MAX_KERNEL_ARGS) {
      throw new RangeError(`A kernel takes at most ${MAX_KERNEL_ARGS} arguments, got ${args.length}`);
    }
    for (let i = 0; i < args.length; i++) {
      const arg = args[i];
      const offset = i * SLOT_BYTES;
      if (typeof arg === "bigint") this.u64[i] = arg;
      else if ("i32" in arg) this.view.setInt32(offset, arg.i32, true);
      else if ("u32" in arg) this.view.setUint32(offset, arg.u32, true);
      else this.view.setFloat32(offset, arg.f32, true);
    }
    return this.addresses;
  }
}
