// A caching device-memory allocator for one stream: freed blocks go to a free list by rounded size
// and are reused by later allocations (safe because every op runs in order on the engine's stream);
// when the driver runs out of memory the cache is released and the allocation retried once.

import type { Driver } from "./ffi/driver.ts";
import { DeviceMemoryError } from "./ffi/errors.ts";

/** Allocations are rounded up to this many bytes (small) ... */
const SMALL_ROUNDING = 512;
/** ... or to this many (from LARGE_FROM bytes on), so that similar sizes share blocks. */
const LARGE_ROUNDING = 2 * 1024 * 1024;
const LARGE_FROM = 1024 * 1024;

/** Device memory with a per-size free list. */
export class CachingAllocator {
  private readonly free = new Map<number, bigint[]>();
  private readonly sizes = new Map<bigint, number>();
  /** Bytes held from the driver (in use + cached). */
  reserved = 0;
  /** Bytes handed out and not yet freed. */
  inUse = 0;
  /** Highest `inUse` seen. */
  peak = 0;

  constructor(private readonly driver: Driver) {}

  /**
   * Returns a device pointer to at least `bytes` bytes.
   *
   * @example
   * ```ts
   * const pointer = allocator.alloc(1 << 20);
   * allocator.release(pointer);
   * ```
   */
  alloc(bytes: number): bigint {
    const size = CachingAllocator.round(bytes);
    const cached = this.free.get(size)?.pop();
    let pointer = cached;
    if (pointer === undefined) {
      try {
        pointer = this.driver.memAlloc(size);
      } catch (error) {
        if (!(error instanceof DeviceMemoryError) || this.reserved === this.inUse) throw error;
        this.emptyCache();
        pointer = this.driver.memAlloc(size);
      }
      this.reserved += size;
    }
    this.sizes.set(pointer, size);
    this.inUse += size;
    this.peak = Math.max(this.peak, this.inUse);
    return pointer;
  }

  /** Gives a block back to the cache (later work on the stream may reuse it). */
  release(pointer: bigint): void {
    const size = this.sizes.get(pointer);
    if (size === undefined) {
      throw new RangeError(`Device pointer 0x${pointer.toString(16)} was not allocated here`);
    }
    this.sizes.delete(pointer);
    this.inUse -= size;
    const list = this.free.get(size) ?? [];
    list.push(pointer);
    this.free.set(size, list);
  }

  /** Frees every cached block back to the driver (the stream must be idle or ordered before). */
  emptyCache(): void {
    this.driver.synchronize();
    for (const list of this.free.values()) {
      for (const pointer of list) {
        this.driver.memFree(pointer);
      }
    }
    for (const [size, list] of this.free) this.reserved -= size * list.length;
    this.free.clear();
  }

  /** Frees everything, in use or cached. */
  releaseAll(): void {
    for (const pointer of [...this.sizes.keys()]) this.release(pointer);
    this.emptyCache();
  }

  private static round(bytes: number): number {
    const unit = bytes >= LARGE_FROM ? LARGE_ROUNDING : SMALL_ROUNDING;
    return Math.max(unit, Math.ceil(bytes / unit) * unit);
  }
}
