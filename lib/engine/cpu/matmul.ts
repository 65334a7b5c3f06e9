// The CPU matmul kernel: out[M, N] = alpha * op(a) @ op(b) + beta * out, computed as dot products of
// contiguous rows (op(a) rows against op(b) columns, transposed into scratch when needed), 4x4 at a time.

/** Dimensions and flags of one matmul; a is stored [M, P] (or [P, M] when transA), b [P, N] (or [N, P]). */
export interface MatmulShape {
  m: number;
  n: number;
  p: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[base + c];
  }
  return dst;
}

/** Computes the matmul described by `shape` into `out` (which must not alias a or b). */
export function matmulF32(out: Float32Array, a: Float32Array, b: Float32Array, shape: MatmulShape): void {
  const { m, n, p, alpha, beta } = shape;
  // Rows of A: [M, P]; rows of Bt: [N, P].
  const A = shape.transA ? transpose(a, p, m) : a;
  const B = shape.transB ? b : transpose(b, p, n);
  const store = (i: number, j: number, sum: number) => {
    const o = i * n + j;
    out[o] = beta === 0 ? alpha * sum : alpha * sum + beta * out[o];
  };
  const m4 = m - (m % 4);
  const n4 = n - (n % 4);
  for (let i = 0; i < m4; i += 4) {
    const a0 = i * p, a1 = a0 + p, a2 = a1 + p, a3 = a2 + p;
    for (let j = 0; j < n4; j += 4) {
      const b0 = j * p, b1 = b0 + p, b2 = b1 + p, b3 = b2 + p;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let k = 0; k < p; k++) {
        const x0 = A[a0 + k], x1 = A[a1 + k], x2 = A[a2 + k], x3 = A[a3 + k];
        const y0 = B[b0 + k], y1 = B[b1 + k], y2 = B[b2 + k], y3 = B[b3 + k];
        s00 += x0 * y0, s01 += x0 * y1, s02 += x0 * y2, s03 += x0 * y3;
        s10 += x1 * y0, s11 += x1 * y1, s12 += x1 * y2, s13 += x1 * y3;
        s20 += x2 * y0, s21 += x2 * y1, s22 += x2 * y2, s23 += x2 * y3;
        s30 += x3 * y0, s31 += x3 * y1, s32 += x3 * y2, s33 += x3 * y3;
      }
      store(i, j, s00), store(i, j + 1, s01), store(i, j + 2, s02), store(i, j + 3, s03);
      store(i + 1, j, s10), store(i + 1, j + 1, s11), store(i + 1, j + 2, s12), store(i + 1, j + 3, s13);
      store(i + 2, j, s20), store(i + 2, j + 1, s21), store(i + 2, j + 2, s22), store(i + 2, j + 3, s23);
      store(i + 3, j, s30), store(i + 3, j + 1, s31), store(i + 3, j + 2, s32), store(i + 3, j + 3, s33);
    }
  }
  const dot = (i: number, j: number) => {
    let s = 0;
    const ai = i * p, bj = j * p;
    for (let k = 0; k < p; k++) s += A[ai + k] * B[bj + k];
    store(i, j, s);
  };
  for (let i = 0; i < m4; i++) for (let j = n4; j < n; j++) dot(i, j);
  for (let i = m4; i < m; i++) for (let j = 0; j < n; j++) dot(i, j);
}
