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

/// What forward keeps for backward. `.recompute` keeps nothing of size T² (only RoPE's rotated q, k): backward
/// recomputes each tile's probabilities with the same products and softmax as forward, so they are
/// bit-identical to forward's. `.probabilities` keeps every probability [B, h, T, T] (backward skips the
/// recomputation: faster for short sequences, O(h·T²) memory per block).
public enum AttentionMemory: Sendable, Equatable {
    case recompute
    case probabilities
}

/// Scaled dot-product multi-head self-attention on projected q, k, v [B, T, d] (heads interleaved
/// as d = h·dh, head j owns columns j·dh..<(j+1)·dh), with a key padding mask from `lengths`:
/// keys t ≥ lengths[b] get probability 0. out [B, T, d]. Query rows past the length are computed
/// like the others (finite) and are the caller's to ignore.
/// The kernel runs per (utterance, head) pair in tiles of `tileRows` queries: a tile's whole rows of scores
/// [tileRows, T] (exact softmax over every key, no running rescale), then its rows of the output. Memory per
/// thread: two tiles of scores, O(T) for a fixed tile; nothing of size T² unless `.probabilities`.
public struct AttentionShape: Sendable {
    public let b, t, d, heads: Int
    public let position: AttentionPosition
    public let memory: AttentionMemory
    /// Scores per tile aimed at, and the fewest query rows per tile (also the rows of Shaw's relative logits
    /// computed at a time). Defaults: 2^18 floats (1 MiB) and 64 rows; tests shrink them to get many tiles.
    public let tileScores: Int, minTileRows: Int
    public var dh: Int { d / heads }
    public var relCount: Int { if case let .shaw(l, r) = position { return l + r + 1 } else { return 0 } }
    public var isRope: Bool { position == .rope }
    public init(
        b: Int, t: Int, d: Int, heads: Int, position: AttentionPosition, memory: AttentionMemory = .recompute,
        tileScores: Int = 1 << 18, minTileRows: Int = 64
    ) {
        precondition(d % heads == 0, "heads must divide d")
        if position == .rope { precondition((d / heads) % 2 == 0, "RoPE needs an even head dim") }
        self.b = b
        self.t = t
        self.d = d
        self.heads = heads
        self.position = position
        self.memory = memory
        self.tileScores = tileScores
        self.minTileRows = max(1, minTileRows)
    }
    /// Query rows per tile: all T when T² ≤ `tileScores` (one tile per pair), else max(minTileRows, tileScores / T).
    /// tileRows·T never decreases as T grows, so a workspace sized for the longest T fits every shorter one.
    public var tileRows: Int { min(t, max(minTileRows, tileScores / max(t, 1))) }
    /// Floats forward saves for backward: with `.probabilities` the probabilities [B, h, T, T]; with RoPE the
    /// rotated q and k [B, T, d] each.
    public var savedCount: Int { (memory == .probabilities ? b * heads * t * t : 0) + (isRope ? 2 * b * t * d : 0) }
    /// Scratch floats per thread (one (utterance, head) pair at a time): a tile of probabilities and one of
    /// their gradients [tileRows, T], and Shaw's relative logits for `minTileRows` queries.
    public var perThreadWorkspace: Int { 2 * tileRows * t + minTileRows * max(relCount, 1) }
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

/// The operands of one (utterance, head) pair: q, k (rotated with RoPE), the unrotated q Shaw's logits
/// read, v, and the pair's column offset `off` = bi·T·d + head·dh.
struct AttentionPair {
    let qs, ks, q, v: CFPtr
    let relKey: CFPtr?
    let off, len: Int
}

/// Probabilities of query rows i0..<i0+m of one pair into p [m, T]: scale·q·kᵀ (+ Shaw's relative logits,
/// `minTileRows` queries at a time into rel), keys ≥ len at −∞, softmax over each whole row. Forward and
/// backward's recomputation both call this, so the probabilities are bit-identical.
func attentionProbabilities(
    _ compute: Compute, p: FPtr, rel: FPtr, rows i0: Int, _ m: Int, pair x: AttentionPair, shape s: AttentionShape
) {
    let t = s.t, d = s.d, dh = s.dh
    let scale = 1 / Float(dh).squareRoot()
    gemm(
        compute, transA: false, transB: true, m: m, n: t, k: dh, alpha: scale, a: x.qs + x.off + i0 * d, lda: d,
        b: x.ks + x.off, ldb: d, beta: 0, c: p, ldc: t)
    if case let .shaw(left, right) = s.position, let relKey = x.relKey {
        let r = left + right + 1
        for c0 in stride(from: 0, to: m, by: s.minTileRows) {
            let mc = min(s.minTileRows, m - c0)
            gemm(
                compute, transA: false, transB: true, m: mc, n: r, k: dh, alpha: scale,
                a: x.q + x.off + (i0 + c0) * d, lda: d, b: relKey, ldb: dh, beta: 0, c: rel, ldc: r)
            for ii in 0..<mc {
                let i = i0 + c0 + ii
                let pr = p + (c0 + ii) * t, rr = rel + ii * r
                for j in 0..<t { pr[j] += rr[relIndex(j - i, left, right)] }
            }
        }
    }
    if x.len < t { for i in 0..<m { (p + i * t + x.len).update(repeating: -.infinity, count: t - x.len) } }
    softmaxForward(y: p, x: p, n: m, v: t)
}

/// Forward. saved: shape.savedCount floats; work: shape.workspaceCount floats; relKey: E (shaw only).
public func attentionForward(
    _ compute: Compute, out: FPtr, saved: FPtr, work: FPtr, q: CFPtr, k: CFPtr, v: CFPtr,
    relKey: CFPtr?, lengths: UnsafePointer<Int32>, shape s: AttentionShape
) {
    let t = s.t, d = s.d, dh = s.dh, h = s.heads
    let kept = s.memory == .probabilities
    let probs = saved, rotated = saved + (kept ? s.b * h * t * t : 0)
    var qs = q, ks = k
    if s.isRope {
        let qr = rotated, kr = qr + s.b * t * d
        ropeApply(qr, q, b: s.b, t: t, d: d, heads: h, inverse: false)
        ropeApply(kr, k, b: s.b, t: t, d: d, heads: h, inverse: false)
        qs = CFPtr(qr)
        ks = CFPtr(kr)
    }
    let parts = s.pairParts(compute.threads), per = s.perThreadWorkspace, rows = s.tileRows
    let qsC = qs, ksC = ks
    // Each part owns a contiguous range of (utterance, head) pairs and its own workspace; every output
    // element is written by one part with the same arithmetic as one thread.
    parallelFor(parts) { p0, p1 in
        for part in p0..<p1 {
            let tile = work + part * per, rel = tile + 2 * rows * t
            for pair in (s.b * h * part / parts)..<(s.b * h * (part + 1) / parts) {
                let bi = pair / h, hh = pair % h
                let x = AttentionPair(
                    qs: qsC, ks: ksC, q: q, v: v, relKey: relKey, off: bi * t * d + hh * dh, len: Int(lengths[bi]))
                for i0 in stride(from: 0, to: t, by: rows) {
                    let m = min(rows, t - i0)
                    let p = kept ? probs + pair * t * t + i0 * t : tile
                    attentionProbabilities(compute, p: p, rel: rel, rows: i0, m, pair: x, shape: s)
                    gemm(
                        compute, transA: false, transB: false, m: m, n: dh, k: t, alpha: 1, a: p, lda: t,
                        b: v + x.off, ldb: d, beta: 0, c: out + x.off + i0 * d, ldc: d)
                }
            }
        }
    }
}

/// Backward: accumulates dq, dk, dv [B, T, d] (or overwrites them: `write`) and dRelKey (shaw). Reads what
/// forward saved and recomputes each tile's probabilities unless forward kept them.
public func attentionBackward(
    _ compute: Compute, dq: FPtr, dk: FPtr, dv: FPtr, dRelKey: FPtr?, work: FPtr, dOut: CFPtr,
    saved: CFPtr, q: CFPtr, k: CFPtr, v: CFPtr, relKey: CFPtr?, lengths: UnsafePointer<Int32>,
    shape s: AttentionShape, write: GradientWrite = .accumulate
) {
    let t = s.t, d = s.d, dh = s.dh, h = s.heads
    let kept = s.memory == .probabilities
    var qs = q, ks = k
    var dqs = dq, dks = dk
    let parts = s.pairParts(compute.threads), per = s.perThreadWorkspace
    if s.isRope {
        qs = saved + (kept ? s.b * h * t * t : 0)
        ks = qs + s.b * t * d
        dqs = work + per * compute.threads
        dks = dqs + s.b * t * d  // every head's slice written first below
    }
    let grads = AttentionGradients(
        dq: dq, dqs: dqs, dks: dks, dv: dv, dRelParts: work + per * compute.threads,  // Shaw (never with RoPE)
        betaV: write == .overwrite ? 0 : 1, betaQK: write == .overwrite || s.isRope ? 0 : 1)
    let qsC = qs, ksC = ks
    parallelFor(parts) { p0, p1 in
        for part in p0..<p1 {
            let tile = work + part * per
            for pair in (s.b * h * part / parts)..<(s.b * h * (part + 1) / parts) {
                let bi = pair / h, hh = pair % h
                let x = AttentionPair(
                    qs: qsC, ks: ksC, q: q, v: v, relKey: relKey, off: bi * t * d + hh * dh, len: Int(lengths[bi]))
                attentionPairBackward(
                    compute, tile: tile, kept: kept ? saved + pair * t * t : nil, dOut: dOut, pair: x, index: pair,
                    grads: grads, wantRel: dRelKey != nil, shape: s)
            }
        }
    }
    attentionBackwardFinish(
        dq: dq, dk: dk, dRelKey: dRelKey, dRelParts: grads.dRelParts, dqs: dqs, dks: dks, shape: s, write: write)
}

/// Where one pair's backward writes: dq (Shaw's part), dq' and dk' (rotated with RoPE, else dq and dk), dv,
/// the pairs' dE contributions [B·h, r, dh]; the β of the first product into each head's slice of dv and of
/// dq', dk' (0 overwrites it, 1 adds to it).
struct AttentionGradients {
    let dq, dqs, dks, dv, dRelParts: FPtr
    let betaV, betaQK: Float
}

/// One pair's backward, tile by tile of query rows: the tile's probabilities P (kept, or recomputed into the
/// first half of `tile`), dP = dO·vᵀ (second half), dv += Pᵀ·dO, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq = scale·dS·k,
/// dk += scale·dSᵀ·q, and Shaw's relative-logit gradient for `minTileRows` queries at a time.
func attentionPairBackward(
    _ compute: Compute, tile: FPtr, kept: CFPtr?, dOut: CFPtr, pair x: AttentionPair, index pair: Int,
    grads g: AttentionGradients, wantRel: Bool, shape s: AttentionShape
) {
    let t = s.t, d = s.d, dh = s.dh, rows = s.tileRows
    let scale = 1 / Float(dh).squareRoot()
    let dp = tile + rows * t, rel = tile + 2 * rows * t
    for i0 in stride(from: 0, to: t, by: rows) {
        let m = min(rows, t - i0), first = i0 == 0
        var p = CFPtr(tile)
        if let kept {
            p = kept + i0 * t
        } else {
            attentionProbabilities(compute, p: tile, rel: rel, rows: i0, m, pair: x, shape: s)
        }
        let dOutRows = dOut + x.off + i0 * d
        gemm(compute, transA: false, transB: true, m: m, n: t, k: dh, alpha: 1, a: dOutRows, lda: d,
             b: x.v + x.off, ldb: d, beta: 0, c: dp, ldc: t)
        gemm(compute, transA: true, transB: false, m: t, n: dh, k: m, alpha: 1, a: p, lda: t,
             b: dOutRows, ldb: d, beta: first ? g.betaV : 1, c: g.dv + x.off, ldc: d)
        for i in 0..<m {
            let pr = p + i * t, dr = dp + i * t
            let dd = dot(pr, dr, t)
            for j in 0..<t { dr[j] = pr[j] * (dr[j] - dd) }
        }
        gemm(compute, transA: false, transB: false, m: m, n: dh, k: t, alpha: scale, a: dp, lda: t,
             b: x.ks + x.off, ldb: d, beta: g.betaQK, c: g.dqs + x.off + i0 * d, ldc: d)
        gemm(compute, transA: true, transB: false, m: t, n: dh, k: m, alpha: scale, a: dp, lda: t,
             b: x.qs + x.off + i0 * d, ldb: d, beta: first ? g.betaQK : 1, c: g.dks + x.off, ldc: d)
        if case let .shaw(left, right) = s.position, let relKey = x.relKey, wantRel {
            let r = left + right + 1
            for c0 in stride(from: 0, to: m, by: s.minTileRows) {
                let mc = min(s.minTileRows, m - c0)
                rel.update(repeating: 0, count: mc * r)
                for ii in 0..<mc {
                    let i = i0 + c0 + ii
                    let dr = dp + (c0 + ii) * t, rr = rel + ii * r
                    for j in 0..<t { rr[relIndex(j - i, left, right)] += dr[j] }
                }
                gemm(compute, transA: false, transB: false, m: mc, n: dh, k: r, alpha: scale, a: rel, lda: r,
                     b: relKey, ldb: dh, beta: 1, c: g.dq + x.off + (i0 + c0) * d, ldc: d)
                gemm(compute, transA: true, transB: false, m: r, n: dh, k: mc, alpha: scale, a: rel, lda: r,
                     b: x.q + x.off + (i0 + c0) * d, ldb: d, beta: first && c0 == 0 ? 0 : 1,
                     c: g.dRelParts + pair * r * dh, ldc: dh)
            }
        }
    }
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

