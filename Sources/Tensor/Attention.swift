#if canImport(Glibc)
    import Glibc
#endif

/// How attention knows positions. `conv` position is a separate op before the blocks, so
/// attention sees `.none` then.
public enum AttentionPosition: Sendable, Equatable {
    case none
    /// Shaw relative keys: score_ij += q_i·E[clamp(j − i, −left, right) + left]/√dh; E [left+right+1, dh]
    /// shared by the heads.
    case shaw(left: Int, right: Int)
    /// Rotary embedding on q and k, base 10000, pairs (i, i + dh/2).
    case rope
}

/// Scaled dot-product multi-head self-attention on projected q, k, v [B, T, d] (heads interleaved
/// as d = h·dh, head j owns columns j·dh..<(j+1)·dh), with a key padding mask from `lengths`:
/// keys t ≥ lengths[b] get probability 0. out [B, T, d]. Query rows past the length are computed
/// like the others (finite) and are the caller's to ignore.
public struct AttentionShape: Sendable {
    public let b, t, d, heads: Int
    public let position: AttentionPosition
    public var dh: Int { d / heads }
    public var relCount: Int { if case let .shaw(l, r) = position { return l + r + 1 } else { return 0 } }
    public var isRope: Bool { position == .rope }
    public init(b: Int, t: Int, d: Int, heads: Int, position: AttentionPosition) {
        precondition(d % heads == 0, "heads must divide d")
        if position == .rope { precondition((d / heads) % 2 == 0, "RoPE needs an even head dim") }
        self.b = b
        self.t = t
        self.d = d
        self.heads = heads
        self.position = position
    }
    /// Floats forward saves for backward: the probabilities [B, h, T, T] and, with RoPE, rotated q and k.
    public var savedCount: Int { b * heads * t * t + (isRope ? 2 * b * t * d : 0) }
    /// Scratch floats per thread (one (utterance, head) pair at a time).
    public var perThreadWorkspace: Int { t * t + t * max(relCount, 1) }
    /// Scratch floats needed by forward and backward (not kept between them) run with `threads` threads
    /// (`compute.threads`): one per-pair workspace per thread, then RoPE's rotated gradients. With Shaw
    /// keys, one dE contribution per (utterance, head) pair, summed in pair order after the pairs ran.
    public func workspaceCount(threads: Int) -> Int {
        perThreadWorkspace * threads + (isRope ? 2 * b * t * d : 0) + b * heads * relCount * dh
    }
    /// Threads that share the (utterance, head) pairs.
    func pairParts(_ threads: Int) -> Int { max(1, min(threads, b * heads)) }
}

/// Rotates pairs (i, i + dh/2) of every head by angle pos·θ_i, θ_i = 10000^(−2i/dh); inverse = true
/// rotates by −angle (the transpose, used in backward). dst may equal src.
@inline(__always)
func ropeApply(_ dst: FPtr, _ src: CFPtr, b: Int, t: Int, d: Int, heads: Int, inverse: Bool) {
    let dh = d / heads, half = dh / 2
    for ti in 0..<t {
        for i in 0..<half {
            let theta = pow(10000.0, -2.0 * Double(i) / Double(dh))
            let ang = Double(ti) * theta
            let cs = Float(cos(ang)), sn = inverse ? -Float(sin(ang)) : Float(sin(ang))
            for bi in 0..<b {
                let base = (bi * t + ti) * d
                for hh in 0..<heads {
                    let o = base + hh * dh + i
                    let x0 = src[o], x1 = src[o + half]
                    dst[o] = x0 * cs - x1 * sn
                    dst[o + half] = x1 * cs + x0 * sn
                }
            }
        }
    }
}

@inline(__always) func relIndex(_ delta: Int, _ left: Int, _ right: Int) -> Int { min(max(delta, -left), right) + left }

/// Forward. saved: shape.savedCount floats; work: shape.workspaceCount floats; relKey: E (shaw only).
public func attentionForward(
    _ compute: Compute, out: FPtr, saved: FPtr, work: FPtr, q: CFPtr, k: CFPtr, v: CFPtr,
    relKey: CFPtr?, lengths: UnsafePointer<Int32>, shape s: AttentionShape
) {
    let t = s.t, d = s.d, dh = s.dh, h = s.heads
    let scale = 1 / Float(dh).squareRoot()
    let probs = saved
    var qs = q, ks = k
    if s.isRope {
        let qr = saved + s.b * h * t * t, kr = qr + s.b * t * d
        ropeApply(qr, q, b: s.b, t: t, d: d, heads: h, inverse: false)
        ropeApply(kr, k, b: s.b, t: t, d: d, heads: h, inverse: false)
        qs = CFPtr(qr)
        ks = CFPtr(kr)
    }
    let parts = s.pairParts(compute.threads), per = s.perThreadWorkspace
    // Each part owns a contiguous range of (utterance, head) pairs and its own workspace; every output
    // element is written by one part with the same arithmetic as one thread.
    parallelFor(parts) { p0, p1 in
        for part in p0..<p1 {
            let rel = work + part * per + t * t
            for pair in (s.b * h * part / parts)..<(s.b * h * (part + 1) / parts) {
                let bi = pair / h, hh = pair % h
                let len = Int(lengths[bi])
                do {
                    let off = bi * t * d + hh * dh
                    let p = probs + (bi * h + hh) * t * t
                    gemm(
                        compute, transA: false, transB: true, m: t, n: t, k: dh, alpha: scale, a: qs + off, lda: d,
                        b: ks + off, ldb: d, beta: 0, c: p, ldc: t)
                    if case let .shaw(left, right) = s.position, let relKey {
                        let r = left + right + 1
                        gemm(
                            compute, transA: false, transB: true, m: t, n: r, k: dh, alpha: scale, a: q + off, lda: d,
                            b: relKey, ldb: dh, beta: 0, c: rel, ldc: r)
                        for i in 0..<t {
                            let pr = p + i * t, rr = rel + i * r
                            for j in 0..<t { pr[j] += rr[relIndex(j - i, left, right)] }
                        }
                    }
                    if len < t { for i in 0..<t { (p + i * t + len).update(repeating: -.infinity, count: t - len) } }
                    softmaxForward(y: p, x: p, n: t, v: t)
                    gemm(
                        compute, transA: false, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t, b: v + off,
                        ldb: d,
                        beta: 0, c: out + off, ldc: d)
                }
            }
        }
    }
}

/// Backward: accumulates dq, dk, dv [B, T, d] (or overwrites them: `write`) and dRelKey (shaw). Reads what
/// forward saved.
public func attentionBackward(
    _ compute: Compute, dq: FPtr, dk: FPtr, dv: FPtr, dRelKey: FPtr?, work: FPtr, dOut: CFPtr,
    saved: CFPtr, q: CFPtr, k: CFPtr, v: CFPtr, relKey: CFPtr?,
    shape s: AttentionShape, write: GradientWrite = .accumulate
) {
    let t = s.t, d = s.d, dh = s.dh, h = s.heads
    let scale = 1 / Float(dh).squareRoot()
    let probs = saved
    var qs = q, ks = k
    var dqs = dq, dks = dk
    let parts = s.pairParts(compute.threads), per = s.perThreadWorkspace
    if s.isRope {
        qs = saved + s.b * h * t * t
        ks = qs + s.b * t * d
        dqs = work + per * compute.threads
        dks = dqs + s.b * t * d  // every head's slice written first below
    }
    // The first product into each head's slice of dv, dq (dq'), dk (dk') overwrites it or adds to it.
    let betaV: Float = write == .overwrite ? 0 : 1, betaQK: Float = write == .overwrite || s.isRope ? 0 : 1
    let dqsC = dqs, dksC = dks, qsC = qs, ksC = ks
    let dRelParts = work + per * compute.threads  // Shaw (never with RoPE): [B·h, r, dh]
    parallelFor(parts) { p0, p1 in
        for part in p0..<p1 {
            let dp = work + part * per, drel = dp + t * t
            let dqs = dqsC, dks = dksC, qs = qsC, ks = ksC
            for pair in (s.b * h * part / parts)..<(s.b * h * (part + 1) / parts) {
                let bi = pair / h, hh = pair % h
                let off = bi * t * d + hh * dh
                let p = probs + (bi * h + hh) * t * t
                gemm(compute, transA: false, transB: true, m: t, n: t, k: dh, alpha: 1, a: dOut + off, lda: d,
                     b: v + off, ldb: d, beta: 0, c: dp, ldc: t)
                gemm(compute, transA: true, transB: false, m: t, n: dh, k: t, alpha: 1, a: p, lda: t,
                     b: dOut + off, ldb: d, beta: betaV, c: dv + off, ldc: d)
                // dS = P ⊙ (dP − Σ_j dP⊙P), in place.
                for i in 0..<t {
                    let pr = p + i * t, dr = dp + i * t
                    let dd = dot(pr, dr, t)
                    for j in 0..<t { dr[j] = pr[j] * (dr[j] - dd) }
                }
                gemm(compute, transA: false, transB: false, m: t, n: dh, k: t, alpha: scale, a: dp, lda: t,
                     b: ks + off, ldb: d, beta: betaQK, c: dqs + off, ldc: d)
                gemm(compute, transA: true, transB: false, m: t, n: dh, k: t, alpha: scale, a: dp, lda: t,
                     b: qs + off, ldb: d, beta: betaQK, c: dks + off, ldc: d)
                if case let .shaw(left, right) = s.position, let relKey, dRelKey != nil {
                    let r = left + right + 1
                    drel.update(repeating: 0, count: t * r)
                    for i in 0..<t {
                        let dr = dp + i * t, rr = drel + i * r
                        for j in 0..<t { rr[relIndex(j - i, left, right)] += dr[j] }
                    }
                    gemm(compute, transA: false, transB: false, m: t, n: dh, k: r, alpha: scale, a: drel, lda: r,
                         b: relKey, ldb: dh, beta: 1, c: dq + off, ldc: d)
                    gemm(compute, transA: true, transB: false, m: r, n: dh, k: t, alpha: scale, a: drel, lda: r,
                         b: q + off, ldb: d, beta: 0, c: dRelParts + pair * r * dh, ldc: dh)
                }
            }
        }
    }
    attentionBackwardFinish(dq: dq, dk: dk, dRelKey: dRelKey, dRelParts: dRelParts, dqs: dqs, dks: dks, shape: s,
                            write: write)
}

/// The end of `attentionBackward`: Shaw's relative-key gradient summed over the pairs, and RoPE's rotation of
/// dq', dk' back into dq, dk.
private func attentionBackwardFinish(dq: FPtr, dk: FPtr, dRelKey: FPtr?, dRelParts: CFPtr, dqs: FPtr,
                                     dks: FPtr, shape s: AttentionShape, write: GradientWrite) {
    let t = s.t, d = s.d, h = s.heads
    if let dRelKey, s.relCount > 0 {
        // dE += the pairs' contributions in pair order (the same sum on any number of threads).
        let count = s.relCount * s.dh
        parallelFor(count, grain: 256) { lo, hi in
            for pair in 0..<(s.b * h) {
                let src = dRelParts + pair * count
                for i in lo..<hi { dRelKey[i] += src[i] }
            }
        }
    }
    if s.isRope {
        // dq += Rᵀ·dq', dk += Rᵀ·dk' (rotate back in place, then add or store).
        ropeApply(dqs, dqs, b: s.b, t: t, d: d, heads: h, inverse: true)
        ropeApply(dks, dks, b: s.b, t: t, d: d, heads: h, inverse: true)
        if write == .overwrite {
            copy(dq, dqs, n: s.b * t * d)
            copy(dk, dks, n: s.b * t * d)
        } else {
            axpy(dq, dqs, n: s.b * t * d)
            axpy(dk, dks, n: s.b * t * d)
        }
    }
}

public enum AttentionReference {
    public static func forward(
        q: [Double], k: [Double], v: [Double], relKey: [Double]?, lengths: [Int32],
        shape s: AttentionShape
    ) -> [Double] {
        let t = s.t, d = s.d, dh = s.dh
        var qq = q, kk = k
        if s.isRope {
            func rot(_ x: [Double]) -> [Double] {
                var y = x
                for bi in 0..<s.b {
                    for ti in 0..<t {
                        for hh in 0..<s.heads {
                            for i in 0..<(dh / 2) {
                                let ang = Double(ti) * pow(10000.0, -2.0 * Double(i) / Double(dh))
                                let o = (bi * t + ti) * d + hh * dh + i
                                y[o] = x[o] * cos(ang) - x[o + dh / 2] * sin(ang)
                                y[o + dh / 2] = x[o + dh / 2] * cos(ang) + x[o] * sin(ang)
                            }
                        }
                    }
                }
                return y
            }
            qq = rot(q)
            kk = rot(k)
        }
        var out = [Double](repeating: 0, count: s.b * t * d)
        let scale = 1 / Double(dh).squareRoot()
        for bi in 0..<s.b {
            for hh in 0..<s.heads {
                for i in 0..<t {
                    var scores = [Double](repeating: -.infinity, count: t)
                    for j in 0..<Int(lengths[bi]) {
                        var sc = 0.0
                        for e in 0..<dh {
                            sc += qq[(bi * t + i) * d + hh * dh + e] * kk[(bi * t + j) * d + hh * dh + e]
                        }
                        if case let .shaw(l, r) = s.position, let relKey {
                            let idx = min(max(j - i, -l), r) + l
                            for e in 0..<dh { sc += q[(bi * t + i) * d + hh * dh + e] * relKey[idx * dh + e] }
                        }
                        scores[j] = sc * scale
                    }
                    let p = SoftmaxReference.softmax(scores, n: 1, v: t)
                    for e in 0..<dh {
                        var acc = 0.0
                        for j in 0..<t { acc += p[j] * v[(bi * t + j) * d + hh * dh + e] }
                        out[(bi * t + i) * d + hh * dh + e] = acc
                    }
                }
            }
        }
        return out
    }
}
