// Bindings to cuBLASLt through Deno FFI: row-major GEMMs in bf16 or f32 (f32 compute, or TF32 when
// asked), with transposes, accumulation through beta, optional strided batches, one workspace and
// the heuristic's algorithm cached per shape.

import { CudaError } from "./errors.ts";
import { openCudaLibrary } from "./library.ts";

const H = "usize" as const;
const P = "u64" as const;

const SYMBOLS = {
  cublasLtCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtDestroy: { parameters: [H], result: "i32" },
  cublasLtGetVersion: { parameters: [], result: "usize" },
  cublasLtMatmulDescCreate: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  cublasLtMatmulDescSetAttribute: { parameters: [H, "i32", "buffer", "usize"], result: "i32" },
  cublasLtMatrixLayoutCreate: { parameters: ["buffer", "i32", "u64", "u64", "i64"], result: "i32" },
  cublasLtMatrixLayoutSetAttribute: { parameters: [H, "i32", "buffer", "usize"], result: "i32" },
  cublasLtMatmulPreferenceCreate: { parameters: ["buffer"], result: "i32" },
  cublasLtMatmulPreferenceSetAttribute: { parameters: [H, "i32", "buffer", "usize"], result: "i32" },
  cublasLtMatmulAlgoGetHeuristic: {
    parameters: [H, H, H, H, H, H, H, "i32", "buffer", "buffer"],
    result: "i32",
  },
  cublasLtMatmul: {
    parameters: [H, H, "buffer", P, H, P, H, "buffer", P, H, P, H, "buffer", P, "usize", H],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** cublasStatus_t names. */
const STATUS_NAMES: Record<number, string> = {
  1: "CUBLAS_STATUS_NOT_INITIALIZED",
  3: "CUBLAS_STATUS_ALLOC_FAILED",
  7: "CUBLAS_STATUS_INVALID_VALUE",
  8: "CUBLAS_STATUS_ARCH_MISMATCH",
  11: "CUBLAS_STATUS_MAPPING_ERROR",
  13: "CUBLAS_STATUS_EXECUTION_FAILED",
  14: "CUBLAS_STATUS_INTERNAL_ERROR",
  15: "CUBLAS_STATUS_NOT_SUPPORTED",
  16: "CUBLAS_STATUS_LICENSE_ERROR",
};
const CUDA_R_32F = 0;
const CUDA_R_16BF = 14;
const COMPUTE_32F = 68;
const COMPUTE_32F_FAST_TF32 = 77;
const OP_N = 0;
const OP_T = 1;
const DESC_TRANSA = 3;
const DESC_TRANSB = 4;
const LAYOUT_BATCH_COUNT = 5;
const LAYOUT_STRIDED_BATCH_OFFSET = 6;
const PREF_MAX_WORKSPACE_BYTES = 1;
/** sizeof(cublasLtMatmulHeuristicResult_t): algo (64) + workspaceSize (8) + state, waves (8) + reserved (16). */
const HEURISTIC_RESULT_BYTES = 96;

/** Element type of a GEMM operand. */
export type GemmDType = "bf16" | "f32";

/**
 * A row-major GEMM: C[m,n] = alpha * op(A) @ op(B) + beta * C, where A is stored [m,k] (or [k,m]
 * when transA) and B is stored [k,n] (or [n,k] when transB), densely unless a leading dimension says
 * otherwise.
 *
 * @example
 * ```ts
 * // dhidden[R, C] = dlogits[R, V] @ W[V, C], dlogits rows padded to Vp columns (Vp >= V)
 * const shape: GemmShape = { m: R, n: C, k: V, lda: Vp, inputType: "bf16", outputType: "bf16" };
 * ```
 */
export interface GemmShape {
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
  /** Type of A and B. */
  inputType: GemmDType;
  /** Type of C (the accumulated input) and of the result. */
  outputType: GemmDType;
  /** "tf32" lets f32 inputs use TF32 tensor cores; "f32" (default) is full precision. */
  compute?: "f32" | "tf32";
  /** Batched GEMM over `batch` matrices at the given element strides (0 = shared operand). */
  batch?: { count: number; strideA: number; strideB: number; strideC: number };
  /** Elements between rows of the stored A (default packed: k, or m when transA). */
  lda?: number;
  /** Elements between rows of the stored B (default packed: n, or k when transB). */
  ldb?: number;
  /** Elements between rows of C (default packed: n). */
  ldc?: number;
}

interface Plan {
  desc: bigint;
  layoutA: bigint;
  layoutB: bigint;
  layoutC: bigint;
  heuristic: Uint8Array;
}

function checkStatus(call: string, status: number): void {
  if (status !== 0) throw new CudaError(call, status, STATUS_NAMES[status] ?? "CUBLAS_STATUS_UNKNOWN");
}

/** A cuBLASLt handle with its workspace and plan cache. */
export class CublasLt {
  private readonly plans = new Map<string, Plan>();
  private readonly out = new BigUint64Array(1);
  private readonly scalars = new Float32Array(64);
  private readonly count = new Int32Array(64);

  private constructor(
    private readonly lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"],
    private readonly handle: bigint,
    private readonly workspace: bigint,
    private readonly workspaceBytes: number,
  ) {}

  /**
   * Opens cuBLASLt on the current context; `workspace` is a device buffer of `workspaceBytes`.
   *
   * @example
   * ```ts
   * const blas = CublasLt.open(device.alloc(WORKSPACE), WORKSPACE);
   * blas.matmul({ m, n, k, transB: true, inputType: "bf16", outputType: "bf16" }, x, w, y, { stream });
   * ```
   */
  static open(workspace: bigint, workspaceBytes: number, options: { libDir?: string } = {}): CublasLt {
    const lib = openCudaLibrary("cublasLt", SYMBOLS, options).symbols;
    const out = new BigUint64Array(1);
    checkStatus("cublasLtCreate", lib.cublasLtCreate(out));
    return new CublasLt(lib, out[0], workspace, workspaceBytes);
  }

  /** The library's version number, e.g. 130100. */
  version(): number {
    return Number(this.lib.cublasLtGetVersion());
  }

  /** Runs the GEMM on `stream`; `c` is read when beta != 0 and always written. */
  matmul(
    shape: GemmShape,
    a: bigint,
    b: bigint,
    c: bigint,
    options: { alpha?: number; beta?: number; stream: bigint },
  ): void {
    const plan = this.plan(shape);
    this.scalars[0] = options.alpha ?? 1;
    this.scalars[8] = options.beta ?? 0;
    // Column-major view: C^T[n,m] = op(B)^T[n,k] @ op(A)^T[k,m], so B goes first.
    checkStatus(
      "cublasLtMatmul",
      this.lib.cublasLtMatmul(
        this.handle,
        plan.desc,
        this.scalars.subarray(0, 1),
        b,
        plan.layoutB,
        a,
        plan.layoutA,
        this.scalars.subarray(8, 9),
        c,
        plan.layoutC,
        c,
        plan.layoutC,
        plan.heuristic,
        this.workspace,
        BigInt(this.workspaceBytes),
        options.stream,
      ),
    );
  }

  private plan(shape: GemmShape): Plan {
    const key = JSON.stringify(shape); // every field, leading dimensions included
    const cached = this.plans.get(key);
    if (cached) return cached;
    const { m, n, k } = shape;
    const inType = shape.inputType === "bf16" ? CUDA_R_16BF : CUDA_R_32F;
    const outType = shape.outputType === "bf16" ? CUDA_R_16BF : CUDA_R_32F;
    const compute = shape.compute === "tf32" && shape.inputType === "f32"
      ? COMPUTE_32F_FAST_TF32
      : COMPUTE_32F;
    checkStatus("cublasLtMatmulDescCreate", this.lib.cublasLtMatmulDescCreate(this.out, compute, CUDA_R_32F));
    const desc = this.out[0];
    const op = new Int32Array(64);
    op[0] = shape.transB ? OP_T : OP_N; // the column-major "A" is our B
    op[8] = shape.transA ? OP_T : OP_N;
    checkStatus(
      "cublasLtMatmulDescSetAttribute(TRANSA)",
      this.lib.cublasLtMatmulDescSetAttribute(desc, DESC_TRANSA, op.subarray(0, 1), 4n),
    );
    checkStatus(
      "cublasLtMatmulDescSetAttribute(TRANSB)",
      this.lib.cublasLtMatmulDescSetAttribute(desc, DESC_TRANSB, op.subarray(8, 9), 4n),
    );
    const layout = (type: number, rows: number, cols: number, ld: number, stride: number | null) => {
      checkStatus(
        "cublasLtMatrixLayoutCreate",
        this.lib.cublasLtMatrixLayoutCreate(this.out, type, BigInt(rows), BigInt(cols), BigInt(ld)),
      );
      const handle = this.out[0];
      if (shape.batch && stride !== null) {
        const count = new Int32Array(64);
        count[0] = shape.batch.count;
        const offset = new BigInt64Array(64);
        offset[0] = BigInt(stride);
        checkStatus(
          "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)",
          this.lib.cublasLtMatrixLayoutSetAttribute(handle, LAYOUT_BATCH_COUNT, count.subarray(0, 1), 4n),
        );
        checkStatus(
          "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)",
          this.lib.cublasLtMatrixLayoutSetAttribute(
            handle,
            LAYOUT_STRIDED_BATCH_OFFSET,
            offset.subarray(0, 1),
            8n,
          ),
        );
      }
      return handle;
    };
    // Column-major layouts of the stored matrices (before op); a row-major row stride is the
    // column-major leading dimension.
    const layoutB = shape.transB
      ? layout(inType, k, n, shape.ldb ?? k, shape.batch?.strideB ?? null)
      : layout(inType, n, k, shape.ldb ?? n, shape.batch?.strideB ?? null);
    const layoutA = shape.transA
      ? layout(inType, m, k, shape.lda ?? m, shape.batch?.strideA ?? null)
      : layout(inType, k, m, shape.lda ?? k, shape.batch?.strideA ?? null);
    const layoutC = layout(outType, n, m, shape.ldc ?? n, shape.batch?.strideC ?? null);
    checkStatus("cublasLtMatmulPreferenceCreate", this.lib.cublasLtMatmulPreferenceCreate(this.out));
    const preference = this.out[0];
    const bytes = new BigUint64Array(64);
    bytes[0] = BigInt(this.workspaceBytes);
    checkStatus(
      "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)",
      this.lib.cublasLtMatmulPreferenceSetAttribute(
        preference,
        PREF_MAX_WORKSPACE_BYTES,
        bytes.subarray(0, 1),
        8n,
      ),
    );
    const heuristic = new Uint8Array(HEURISTIC_RESULT_BYTES * 2);
    checkStatus(
      "cublasLtMatmulAlgoGetHeuristic",
      this.lib.cublasLtMatmulAlgoGetHeuristic(
        this.handle,
        desc,
        layoutB,
        layoutA,
        layoutC,
        layoutC,
        preference,
        1,
        heuristic,
        this.count,
      ),
    );
    if (this.count[0] < 1) {
      throw new CudaError(
        "cublasLtMatmulAlgoGetHeuristic",
        15,
        "CUBLAS_STATUS_NOT_SUPPORTED",
        `no algorithm for ${key}`,
      );
    }
    const plan = {
      desc,
      layoutA,
      layoutB,
      layoutC,
      heuristic: heuristic.subarray(0, HEURISTIC_RESULT_BYTES),
    };
    this.plans.set(key, plan);
    return plan;
  }
}
