// Safetensors I/O: a lazy, validating reader, a streaming atomic writer, dtype conversions and casts.

export {
  bf16ToF32,
  decodeToF32,
  type DType,
  DTYPES,
  dtypeSize,
  encodeFromF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  type FloatDType,
  isDType,
  type TypedTensor,
  typedView,
} from "./dtypes.ts";
export {
  HEADER_ALIGNMENT,
  MAX_HEADER_BYTES,
  tensorByteLength,
  type TensorHeader,
  type TensorInfo,
} from "./header.ts";
export { castByteLength, castBytes, type CastDTypes } from "./cast.ts";
export { DEFAULT_CHUNK_BYTES, SafetensorsFile } from "./reader.ts";
export { SafetensorsWriter, writeSafetensors } from "./writer.ts";
