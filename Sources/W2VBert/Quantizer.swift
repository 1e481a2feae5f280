// The Gumbel-softmax product quantizer on the unmasked feature-encoder output z at the
// masked frames, and the diversity loss on its code usage:
//   l = proj(z_masked) [S, G·V] → per codebook g: straight-through Gumbel softmax (τ) → id, one-hot y
//   q = concat_g codebook[g, id_g] [S, D]                               (targets of both losses)
//   p̄_g = Σ_frames softmax(l_g) / N_masked (global, all ranks and micro-batches of the step)
//   L_d = (G·V − Σ_g exp(H(p̄_g))) / (G·V)                                (prob perplexity)
// Backward: dq (from the contrastive head) flows to the used codebook rows and, straight through the
// one-hot, to the logits; L_d's gradient is added on the logits; dz at masked rows unless detached.

import Tensor

/// ε inside the entropy's log: H(p) = −Σ p·log(p + ε).
let entropyEpsilon = 1e-7

/// Prob and code perplexities Σ_g exp(H(p̄_g)) of usage sums [soft G·V, hard G·V] over `masked` frames.
public func codePerplexities(
    _ usage: UnsafePointer<Double>, groups G: Int, entries V: Int,
    masked: Double
) -> (prob: Double, code: Double) {
    let gv = G * V
    var pp = 0.0, cp = 0.0
    for g in 0..<G {
        var h = 0.0, hc = 0.0
        for v in 0..<V {
            let p = usage[g * V + v] / masked, q = usage[gv + g * V + v] / masked
            h -= p * log(p + entropyEpsilon)
            hc -= q * log(q + entropyEpsilon)
        }
        pp += exp(h)
        cp += exp(hc)
    }
    return (pp, cp)
}

struct Quantizer {
    let proj: LinearPG, codebook: PG
    let zm: FPtr  // [S, d] z at the masked frames
    /// [S, G·V]: logits, straight-through one-hot, softmax((l+γ)/τ), softmax(l), γ
    let logits, y, soft, probs, noise: FPtr
    let q: FPtr  // [S, D] quantized targets
    let ids: UnsafeMutablePointer<Int32>  // [S, G]
    let usageGrad: FPtr  // [G·V] dL_d/dp̄ / N_masked
    let dq, dy, dLogits, dzm: FPtr  // backward: [S, D], [S, G·V], [S, G·V], [S, d]
    let d, G, V, D: Int
    let compute: Compute

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        compute = a.compute
        proj = LinearPG(l, "quantizer.proj", p, g, compute)
        codebook = PG(l, "quantizer.codebook", p, g)
        d = c.model.dim
        G = c.quantizer.groups
        V = c.quantizer.entries
        D = c.quantizer.dim
        let s = cap.masked, gv = G * V
        zm = a.take(s * d)
        logits = a.take(s * gv)
        y = a.take(s * gv)
        soft = a.take(s * gv)
        probs = a.take(s * gv)
        noise = a.take(s * gv)
        q = a.take(s * D)
        ids = a.takeInt32(s * G)
        usageGrad = a.take(gv)
        dq = a.take(s * D)
        dy = a.take(s * gv)
        dLogits = a.take(s * gv)
        dzm = a.take(s * d)
    }

    /// Logits of the masked rows of z → ids (Gumbel noise from the key's .gumbel stream unless `training`
    /// is off, or `given`), the straight-through sample, the plain softmax (for the usage) and q.
    func forward(z: CFPtr, frames: MaskedFrames, key: RandomKey, tau: Float, training: Bool, given: [Float]?) {
        let S = frames.count, gv = G * V, dg = D / G
        frames.gather(zm, from: z, width: d)
        proj.forward(y: logits, x: zm, n: S, inDim: d, outDim: gv)
        var gn: CFPtr? = nil
        if training {
            if let given {
                precondition(given.count == S * gv, "gumbel override has the wrong size")
                given.withUnsafeBufferPointer { noise.update(from: $0.baseAddress!, count: S * gv) }
            } else {
                var g = key.stream(.gumbel)
                g.fillGumbel(noise, S * gv)
            }
            gn = CFPtr(noise)
        }
        gumbelSoftmaxForward(y: y, ids: ids, soft: soft, logits: logits, noise: gn, tau: tau, n: S * G, v: V)
        softmaxForward(y: probs, x: logits, n: S * G, v: V)
        for i in 0..<S {
            for g in 0..<G {
                (q + i * D + g * dg).update(from: codebook.w + (g * V + Int(ids[i * G + g])) * dg, count: dg)
            }
        }
    }

    /// [soft usage sums G·V, hard-id counts G·V, S] of this micro-batch's masked frames.
    func localUsage(frames S: Int, into out: UnsafeMutablePointer<Double>) {
        let gv = G * V
        out.update(repeating: 0, count: 2 * gv + 1)
        for i in 0..<S {
            let r = probs + i * gv
            for j in 0..<gv { out[j] += Double(r[j]) }
            for g in 0..<G { out[gv + g * V + Int(ids[i * G + g])] += 1 }
        }
        out[2 * gv] = Double(S)
    }

    /// L_d and the perplexities from the step's usage (all ranks and micro-batches) over `masked` frames;
    /// keeps dL_d/dp̄ / masked for backward.
    func diversity(usage: UnsafePointer<Double>, masked: Double) -> (loss: Double, prob: Double, code: Double) {
        let gv = G * V
        usageGrad.update(repeating: 0, count: gv)
        guard masked > 0 else { return (0, 0, 0) }
        let (pp, cp) = codePerplexities(usage, groups: G, entries: V, masked: masked)
        for g in 0..<G {
            var h = 0.0
            for v in 0..<V {
                let pv = usage[g * V + v] / masked
                h -= pv * log(pv + entropyEpsilon)
            }
            let ppg = exp(h)
            for v in 0..<V {
                let pv = usage[g * V + v] / masked
                let dEntropy = log(pv + entropyEpsilon) + pv / (pv + entropyEpsilon)
                usageGrad[g * V + v] = Float(ppg / Double(gv) * dEntropy / masked)
            }
        }
        return ((Double(gv) - pp) / Double(gv), pp, cp)
    }

    /// dq → codebook rows and logits (straight through; only when the forward sampled); + α·dL_d/dl;
    /// → proj; dz at masked rows unless `detach`.
    func backward(
        dz: FPtr, frames: MaskedFrames, tau: Float, training: Bool, diversityScale: Float, masked: Double,
        detach: Bool
    ) {
        let S = frames.count, gv = G * V, dg = D / G
        for i in 0..<S {
            for g in 0..<G { axpy(codebook.g + (g * V + Int(ids[i * G + g])) * dg, dq + i * D + g * dg, n: dg) }
        }
        for g in 0..<G {
            gemm(
                compute, transA: false, transB: true, m: S, n: V, k: dg, alpha: 1, a: dq + g * dg, lda: D,
                b: codebook.w + g * V * dg, ldb: dg, beta: 0, c: dy + g * V, ldc: gv)
        }
        zero(dLogits, S * gv)
        if training { gumbelSoftmaxBackward(dLogits: dLogits, dy: dy, soft: soft, tau: tau, n: S * G, v: V) }
        if masked > 0 && diversityScale != 0 {
            for r in 0..<(S * G) {
                let pr = probs + r * V, gr = usageGrad + (r % G) * V, dr = dLogits + r * V
                var dot: Float = 0
                for v in 0..<V { dot += gr[v] * pr[v] }
                for v in 0..<V { dr[v] += diversityScale * pr[v] * (gr[v] - dot) }
            }
        }
        zero(dzm, S * d)
        proj.backward(dx: dzm, dy: dLogits, x: zm, n: S, inDim: d, outDim: gv)
        if !detach { frames.scatterAdd(dz, from: dzm, width: d) }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
