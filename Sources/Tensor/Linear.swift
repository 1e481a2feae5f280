/// Linear: y[N, out] = x[N, in] · W[out, in]ᵀ + b[out]   (PyTorch layout, weights [out, in]).
/// `bias` may be nil (the Conformer's pointwise convolutions have none).
public func linearForward(
    _ compute: Compute, y: FPtr, x: CFPtr, weight: CFPtr, bias: CFPtr?, n: Int, inDim: Int,
    outDim: Int
) {
    gemm(
        compute, transA: false, transB: true, m: n, n: outDim, k: inDim, alpha: 1, a: x, lda: inDim,
        b: weight, ldb: inDim, beta: 0, c: y, ldc: outDim, bias: bias)
}

/// Accumulates dx += dy·W (or stores it: `write`), dW += dyᵀ·x, db += Σ_rows dy. Any of dx, dWeight, dBias
/// may be nil (a frozen Linear passes nil for both and costs one GEMM).
public func linearBackward(
    _ compute: Compute, dx: FPtr?, dWeight: FPtr?, dBias: FPtr?, dy: CFPtr, x: CFPtr,
    weight: CFPtr, n: Int, inDim: Int, outDim: Int, write: GradientWrite = .accumulate
) {
    // bf16: dy is converted once for both products.
    withSharedOperand(compute, dy, rows: n, cols: outDim, ld: outDim) {
        linearBackwardProducts(
            compute, dx: dx, dWeight: dWeight, dy: dy, x: x, weight: weight, n: n, inDim: inDim,
            outDim: outDim, write: write)
    }
    if let dBias { columnSumAccumulate(dBias, dy, rows: n, cols: outDim) }
}

@inline(__always)
func linearBackwardProducts(
    _ compute: Compute, dx: FPtr?, dWeight: FPtr?, dy: CFPtr, x: CFPtr, weight: CFPtr, n: Int,
    inDim: Int, outDim: Int, write: GradientWrite
) {
    if let dx {
        gemm(
            compute, transA: false, transB: false, m: n, n: inDim, k: outDim, alpha: 1, a: dy, lda: outDim,
            b: weight, ldb: inDim, beta: write == .overwrite ? 0 : 1, c: dx, ldc: inDim)
    }
    if let dWeight {
        gemm(
            compute, transA: true, transB: false, m: outDim, n: inDim, k: n, alpha: 1, a: dy, lda: outDim,
            b: x, ldb: inDim, beta: 1, c: dWeight, ldc: inDim)
    }
}

/// out[c] += Σ_r a[r, c], the rows summed in fixed blocks (`blockSums`: the same on any number of threads).
@inline(__always)
public func columnSumAccumulate(_ out: FPtr, _ a: CFPtr, rows: Int, cols: Int) {
    let sums = rowBlockSums(rows: rows, width: cols) { part, block in
        for r in block {
            let row = a + r * cols
            lanes8(0, cols, { store8(load8(part + $0) + load8(row + $0), part + $0) }, { part[$0] += row[$0] })
        }
    }
    addSums(out, sums, cols)
}

public enum LinearReference {
    public static func forward(
        x: [Double], weight: [Double], bias: [Double]?, n: Int, inDim: Int,
        outDim: Int
    ) -> [Double] {
        var y = [Double](repeating: 0, count: n * outDim)
        for i in 0..<n {
            for o in 0..<outDim {
                var s = bias?[o] ?? 0
                for j in 0..<inDim { s += x[i * inDim + j] * weight[o * inDim + j] }
                y[i * outDim + o] = s
            }
        }
        return y
    }
}
