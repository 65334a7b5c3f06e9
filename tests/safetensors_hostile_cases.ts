// One malformed safetensors file per hostile class, with what the error must name; shared by the
// library test and the CLI test.

import { rawSafetensors, rawWithHeaderBytes } from "./safetensors_files.ts";

/** A malformed file and what its FileFormatError must say. */
export interface HostileCase {
  name: string;
  bytes: Uint8Array;
  /** The tensor the error must name (detail.tensor and the message), if any. */
  tensor?: string;
  /** Parts the message must include besides the file path (e.g. expected and actual values). */
  includes: string[];
}

const f32 = (shape: number[], start: number, end: number) => ({
  dtype: "F32",
  shape,
  data_offsets: [start, end],
});
const u8 = (n: number, start: number) => ({ dtype: "U8", shape: [n], data_offsets: [start, start + n] });
const bytes = (n: number) => new Uint8Array(n);

/** Every hostile class of issue 2 item 4. */
export const HOSTILE_CASES: HostileCase[] = [
  {
    name: "file shorter than the length prefix",
    bytes: new Uint8Array([1, 0, 0]),
    includes: ["3 bytes", "8"],
  },
  {
    name: "header length above MAX_HEADER_BYTES",
    bytes: rawSafetensors({}, bytes(0), { length: 100_000_001n }),
    includes: ["100000001", "100000000"],
  },
  {
    name: "header length beyond the end of the file",
    bytes: rawSafetensors({ w: u8(4, 0) }, bytes(4), { length: 4096n }),
    includes: ["4096"],
  },
  {
    name: "header length of 2^64 - 1",
    bytes: rawSafetensors({}, bytes(0), { length: 0xffffffffffffffffn }),
    includes: ["18446744073709551615"],
  },
  {
    name: "header not UTF-8",
    bytes: rawWithHeaderBytes(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])),
    includes: ["UTF-8"],
  },
  { name: "header not JSON", bytes: rawSafetensors('{"w": {"dtype": "F32"'), includes: ["not valid JSON"] },
  { name: "header not a JSON object", bytes: rawSafetensors('["w"]'), includes: ['start with "{"', "["] },
  {
    name: "unknown dtype",
    bytes: rawSafetensors({ w: { dtype: "F4", shape: [2], data_offsets: [0, 1] } }, bytes(1)),
    tensor: "w",
    includes: ['"F4"', "BF16"],
  },
  {
    name: "negative shape entry",
    bytes: rawSafetensors({ w: f32([-2, 2], 0, 16) }, bytes(16)),
    tensor: "w",
    includes: ["-2", "non-negative integer"],
  },
  {
    name: "fractional shape entry",
    bytes: rawSafetensors({ w: f32([1.5], 0, 4) }, bytes(4)),
    tensor: "w",
    includes: ["1.5"],
  },
  {
    name: "shape entry written as a float literal",
    bytes: rawSafetensors('{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', bytes(8)),
    tensor: "w",
    includes: ["shape entry 2.0", "plain non-negative integer"],
  },
  {
    name: "data_offsets entry in exponent form",
    bytes: rawSafetensors('{"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8e0]}}', bytes(8)),
    tensor: "w",
    includes: ["data_offsets entry 8e0"],
  },
  {
    name: "shape x dtype size differs from the byte range",
    bytes: rawSafetensors({ w: f32([2, 2], 0, 12) }, bytes(12)),
    tensor: "w",
    includes: ["byte length is 12, expected 16", "[2, 2]"],
  },
  {
    name: "element count overflows",
    bytes: rawSafetensors({ w: f32([2 ** 40, 2 ** 40], 0, 4) }, bytes(4)),
    tensor: "w",
    includes: ["overflows", "1099511627776"],
  },
  {
    name: "data_offsets not two integers",
    bytes: rawSafetensors({ w: { dtype: "U8", shape: [4], data_offsets: [0] } }, bytes(4)),
    tensor: "w",
    includes: ["data_offsets", "2 non-negative integers"],
  },
  {
    name: "data_offsets end before start",
    bytes: rawSafetensors({ w: { dtype: "U8", shape: [0], data_offsets: [4, 0] } }, bytes(4)),
    tensor: "w",
    includes: ["[4, 0]"],
  },
  {
    name: "gap between tensors",
    bytes: rawSafetensors({ a: u8(4, 0), b: u8(4, 8) }, bytes(12)),
    tensor: "b",
    includes: ["gap", "byte 8", "expected 4"],
  },
  {
    name: "overlapping tensors",
    bytes: rawSafetensors({ a: u8(8, 0), b: u8(8, 4) }, bytes(12)),
    tensor: "b",
    includes: ["overlaps", "expected 8"],
  },
  {
    name: "data not starting at 0",
    bytes: rawSafetensors({ a: u8(4, 4) }, bytes(8)),
    tensor: "a",
    includes: ["byte 4", "expected 0"],
  },
  {
    name: "trailing bytes after the last tensor",
    bytes: rawSafetensors({ a: u8(4, 0) }, bytes(9)),
    tensor: "a",
    includes: ["ends at byte 4", "9 bytes"],
  },
  {
    name: "data truncated before the last tensor ends",
    bytes: rawSafetensors({ a: u8(4, 0), b: f32([4], 4, 20) }, bytes(10)),
    tensor: "b",
    includes: ["ends at byte 20", "10 bytes"],
  },
  {
    name: "duplicate tensor names",
    bytes: rawSafetensors(
      '{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}',
      bytes(4),
    ),
    tensor: "w",
    includes: ["listed twice"],
  },
  {
    name: "duplicate names spelled with an escape",
    bytes: rawSafetensors(
      '{"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"\\u0077":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}',
      bytes(4),
    ),
    tensor: "w",
    includes: ["listed twice"],
  },
  {
    name: "duplicate field inside a tensor",
    bytes: rawSafetensors('{"w":{"dtype":"U8","dtype":"F32","shape":[2],"data_offsets":[0,2]}}', bytes(2)),
    tensor: "w",
    includes: ['"dtype" appears twice'],
  },
  {
    name: "__metadata__ value not a string",
    bytes: rawSafetensors({ __metadata__: { format: 1 }, a: u8(1, 0) }, bytes(1)),
    tensor: "__metadata__",
    includes: ['"format"', "must be a string"],
  },
  {
    name: "__metadata__ not an object",
    bytes: rawSafetensors({ __metadata__: "pt", a: u8(1, 0) }, bytes(1)),
    tensor: "__metadata__",
    includes: ["must be an object"],
  },
  {
    name: "tensor entry not an object",
    bytes: rawSafetensors({ w: 5 }),
    tensor: "w",
    includes: ["must be an object", "5"],
  },
];
