// hyper-lora kernels: the speaker encoder, the linear factor generator and per-utterance LoRA.
import Foundation

/// Speaker encoder: pooled[b] = mean_{t < len_b} z[b, t] ([B, d], saved), s[b] = tanh(W·pooled[b] + bias) [B, S].
public func speakerEncoderForward(
    _ compute: Compute, s: FPtr, pooled: FPtr, z: CFPtr, lengths: UnsafePointer<Int32>,
    weight: CFPtr, bias: CFPtr, batch: Int, t: Int, d: Int, dim: Int
) {
    for b in 0..<batch {
        let len = max(Int(lengths[b]), 1), m = pooled + b * d
        m.update(repeating: 0, count: d)
        for tt in 0..<len {
            let row = z + (b * t + tt) * d
            for j in 0..<d { m[j] += row[j] }
        }
        let inv = 1 / Float(len)
        for j in 0..<d { m[j] *= inv }
    }
    gemm(
        compute, transA: false, transB: true, m: batch, n: dim, k: d, alpha: 1, a: pooled, lda: d, b: weight, ldb: d,
        beta: 0, c: s, ldc: dim)
    for b in 0..<batch { for k in 0..<dim { s[b * dim + k] = tanhf(s[b * dim + k] + bias[k]) } }
}

/// Backward of the speaker encoder (accumulating dWeight, dBias and, when given, dz at the valid frames).
/// `ds` [B, S] is overwritten with the gradient before tanh.
public func speakerEncoderBackward(
    _ compute: Compute, dz: FPtr?, dWeight: FPtr, dBias: FPtr, ds: FPtr, s: CFPtr,
    pooled: CFPtr, weight: CFPtr,
    lengths: UnsafePointer<Int32>, batch: Int, t: Int, d: Int, dim: Int
) {
    for i in 0..<(batch * dim) { ds[i] *= 1 - s[i] * s[i] }
    gemm(
        compute, transA: true, transB: false, m: dim, n: d, k: batch, alpha: 1, a: ds, lda: dim, b: pooled, ldb: d,
        beta: 1, c: dWeight, ldc: d)
    for b in 0..<batch { for k in 0..<dim { dBias[k] += ds[b * dim + k] } }
    guard let dz else { return }
    for b in 0..<batch {
        let len = max(Int(lengths[b]), 1), inv = 1 / Float(len)
        for j in 0..<d {
            var acc: Float = 0
            for k in 0..<dim { acc += ds[b * dim + k] * weight[k * d + j] }
            let v = acc * inv
            for tt in 0..<len { dz[(b * t + tt) * d + j] += v }
        }
    }
}

/// The table row of a speaker index: `r` for 0 ≤ r < unknown, else `unknown` (the last row: unlabelled
/// utterances, and labels the table does not know).
@inline(__always) public func speakerTableRow(_ r: Int32, unknown: Int) -> Int {
    r >= 0 && Int(r) < unknown ? Int(r) : unknown
}

/// Speaker table (adapter.speaker = table): s[b] = table[row_b] [B, S] for table [unknown + 1, S]; `rows` nil: every
/// utterance takes the unknown row.
public func speakerTableForward(
    s: FPtr, table: CFPtr, rows: UnsafePointer<Int32>?, unknown: Int, batch: Int,
    dim: Int
) {
    for b in 0..<batch {
        let row = rows.map { speakerTableRow($0[b], unknown: unknown) } ?? unknown
        (s + b * dim).update(from: table + row * dim, count: dim)
    }
}

/// Its backward (accumulating): dTable[row_b] += ds[b] (rows shared by several utterances sum).
public func speakerTableBackward(
    dTable: FPtr, ds: CFPtr, rows: UnsafePointer<Int32>?, unknown: Int, batch: Int,
    dim: Int
) {
    for b in 0..<batch {
        let row = rows.map { speakerTableRow($0[b], unknown: unknown) } ?? unknown
        axpy(dTable + row * dim, ds + b * dim, n: dim)
    }
}

/// The linear generator: f[b] = Σ_k h[b, k]·gen[k] for B rows h [B, H] and gen [H, count] → f [B, count].
public func hyperFactorsForward(_ compute: Compute, f: FPtr, h: CFPtr, gen: CFPtr, batch: Int, hDim: Int, count: Int) {
    gemm(
        compute, transA: false, transB: false, m: batch, n: count, k: hDim, alpha: 1, a: h, lda: hDim, b: gen,
        ldb: count, beta: 0, c: f, ldc: count)
}

/// Its backward (accumulating): dGen += hᵀ·dF, dh += dF·genᵀ.
public func hyperFactorsBackward(
    _ compute: Compute, dGen: FPtr, dh: FPtr, dF: CFPtr, h: CFPtr, gen: CFPtr, batch: Int,
    hDim: Int, count: Int
) {
    gemm(
        compute, transA: true, transB: false, m: hDim, n: count, k: batch, alpha: 1, a: h, lda: hDim, b: dF,
        ldb: count, beta: 1, c: dGen, ldc: count)
    gemm(
        compute, transA: false, transB: true, m: batch, n: hDim, k: count, alpha: 1, a: dF, lda: count, b: gen,
        ldb: count, beta: 1, c: dh, ldc: hDim)
}

/// Per-utterance LoRA: rows b·T ..< (b+1)·T of x [B·T, in] use A[b] [r, in], B[b] [out, r] (loraForward each).
public func perUtteranceLoRAForward(
    _ compute: Compute, y: FPtr, u: FPtr, x: CFPtr, a: CFPtr, b: CFPtr, scale: Float,
    batch: Int, t: Int, inDim: Int, outDim: Int, rank r: Int
) {
    for i in 0..<batch {
        loraForward(
            compute, y: y + i * t * outDim, u: u + i * t * r, x: x + i * t * inDim, a: a + i * r * inDim,
            b: b + i * outDim * r, scale: scale, n: t, inDim: inDim, outDim: outDim, rank: r)
    }
}

/// Its backward (accumulating dx, dA[b], dB[b]); du [B·T, r] scratch.
public func perUtteranceLoRABackward(
    _ compute: Compute, dx: FPtr?, dA: FPtr, dB: FPtr, du: FPtr, dy: CFPtr, x: CFPtr,
    u: CFPtr, a: CFPtr, b: CFPtr, scale: Float, batch: Int, t: Int, inDim: Int,
    outDim: Int, rank r: Int
) {
    for i in 0..<batch {
        loraBackward(
            compute, dx: dx.map { $0 + i * t * inDim }, dA: dA + i * r * inDim, dB: dB + i * outDim * r,
            du: du + i * t * r, dy: dy + i * t * outDim, x: x + i * t * inDim, u: u + i * t * r,
            a: a + i * r * inDim, b: b + i * outDim * r, scale: scale, n: t, inDim: inDim, outDim: outDim,
            rank: r)
    }
}

public enum HyperLoRAReference {
    /// The whole chain in Double for one adapted Linear's LoRA branch (no base): s = tanh(W·mean z + bias),
    /// h_b = [s_b; e], A_b = Σ h_b[k] genA[k], B_b = Σ h_b[k] genB[k], y_b = scale·(x_b A_bᵀ) B_bᵀ.
    public static func forward(
        z: [Double], lengths: [Int], weight: [Double], bias: [Double], e: [Double],
        genA: [Double],
        genB: [Double], x: [Double], scale: Double, batch: Int, t: Int, d: Int, dim: Int,
        inDim: Int, outDim: Int, rank: Int
    ) -> [Double] {
        var s: [[Double]] = []
        for b in 0..<batch {
            let len = max(lengths[b], 1)
            var m = [Double](repeating: 0, count: d)
            for tt in 0..<len { for j in 0..<d { m[j] += z[(b * t + tt) * d + j] / Double(len) } }
            s.append(
                (0..<dim).map { k in
                    var acc = bias[k]
                    for j in 0..<d { acc += weight[k * d + j] * m[j] }
                    return Foundation.tanh(acc)
                })
        }
        return generated(
            s: s, e: e, genA: genA, genB: genB, x: x, scale: scale, t: t, inDim: inDim, outDim: outDim,
            rank: rank)
    }

    /// The same chain with the speaker vector from the table (adapter.speaker = table): s_b = table[row_b]
    /// (rows outside 0..<N, N = table rows − 1, take the unknown row N).
    public static func forwardTable(
        table: [Double], rows: [Int32], e: [Double], genA: [Double], genB: [Double],
        x: [Double],
        scale: Double, t: Int, dim: Int, inDim: Int, outDim: Int, rank: Int
    ) -> [Double] {
        let unknown = table.count / dim - 1
        let s = rows.map { r -> [Double] in
            let row = speakerTableRow(r, unknown: unknown)
            return Array(table[(row * dim)..<((row + 1) * dim)])
        }
        return generated(
            s: s, e: e, genA: genA, genB: genB, x: x, scale: scale, t: t, inDim: inDim, outDim: outDim,
            rank: rank)
    }

    /// h_b = [s_b; e] → A_b, B_b → y_b = scale·(x_b A_bᵀ) B_bᵀ for every utterance b (its T rows of x).
    static func generated(
        s: [[Double]], e: [Double], genA: [Double], genB: [Double], x: [Double], scale: Double,
        t: Int, inDim: Int, outDim: Int, rank: Int
    ) -> [Double] {
        let batch = s.count
        var y = [Double](repeating: 0, count: batch * t * outDim)
        for b in 0..<batch {
            let h = s[b] + e
            var a = [Double](repeating: 0, count: rank * inDim), bb = [Double](repeating: 0, count: outDim * rank)
            for k in 0..<h.count {
                for i in 0..<a.count { a[i] += h[k] * genA[k * a.count + i] }
                for i in 0..<bb.count { bb[i] += h[k] * genB[k * bb.count + i] }
            }
            let xb = Array(x[(b * t * inDim)..<((b + 1) * t * inDim)])
            let yb = LoRAReference.forward(
                x: xb, weight: [Double](repeating: 0, count: outDim * inDim), bias: nil,
                a: a, b: bb, scale: scale, n: t, inDim: inDim, outDim: outDim, rank: rank)
            for i in 0..<yb.count { y[b * t * outDim + i] = yb[i] }
        }
        return y
    }
}
