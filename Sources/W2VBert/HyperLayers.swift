// Hypernetwork layers (issue 13, model.hypernetwork = ffn | ffn+conv): one shared generator produces the
// named weights of every Conformer block from a learned layer embedding e_l [E]:
//   W_l = base + Σ_k e_l[k]·coef[k] (+ B_l·A_l with model.hyper_rank > 0)    (kernel: Tensor/Hyper.swift)
// `generate` materialises every block's weights at the start of each forward; the blocks' Linear layers
// read them and accumulate their weight gradients into a per-block dW_l; `backward(block:)` (right after
// that block's backward) turns dW_l into the gradients of base, coef, e_l and the residual, and clears dW_l.
// For a fixed set of layers a linear generator spans the same weights as a deeper one with E outputs.

import Tensor

struct HyperLayers {
    struct Site {
        let site: String, outDim: Int, inDim: Int
        let base: PG, coef: PG
        let residual: [(a: PG, b: PG)]   // per block (empty with hyper_rank 0)
        let w: [FPtr], dW: [FPtr]        // per block, generated weight and its gradient
    }
    let sites: [Site]
    let embedding: PG?
    let dim, rank: Int
    let compute: Compute

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ ar: Arena, config c: Config, blockNames: [String]) {
        compute = ar.compute
        dim = c.model.hyperDim
        rank = c.model.hyperRank
        let hs = ParameterLayout.hyperSites(c)
        embedding = hs.isEmpty ? nil : PG(l, "hypernet.layer_embedding", p, g)
        sites = hs.map { h in
            let residual = c.model.hyperRank > 0
                ? blockNames.map { (PG(l, "\($0).\(h.site).res_a", p, g), PG(l, "\($0).\(h.site).res_b", p, g)) }
                : []
            return Site(site: h.site, outDim: h.outDim, inDim: h.inDim,
                        base: PG(l, "hypernet.\(h.site).base", p, g), coef: PG(l, "hypernet.\(h.site).coef", p, g),
                        residual: residual,
                        w: blockNames.map { _ in ar.take(h.outDim * h.inDim) },
                        dW: blockNames.map { _ in ar.take(h.outDim * h.inDim) })
        }
    }

    /// Block i's generated weights by parameter name ("<block>.<site>.weight") for its Linear layers.
    func generated(block i: Int, name: String) -> [String: PG] {
        var out: [String: PG] = [:]
        for s in sites { out["\(name).\(s.site).weight"] = PG(w: s.w[i], g: s.dW[i]) }
        return out
    }

    /// W_l for every block.
    func generate() {
        guard let e = embedding else { return }
        for s in sites {
            for i in s.w.indices {
                hyperWeightForward(compute, w: s.w[i], base: s.base.w, coef: s.coef.w, e: e.w + i * dim, dim: dim,
                                   a: s.residual.isEmpty ? nil : CFPtr(s.residual[i].a.w), b: s.residual.isEmpty ? nil : CFPtr(s.residual[i].b.w),
                                   rank: rank, outDim: s.outDim, inDim: s.inDim)
            }
        }
    }

    /// After block i's backward: dW_l → gradients of base, coef, e_l, residual; dW_l cleared.
    func backward(block i: Int) {
        guard let e = embedding else { return }
        for s in sites {
            let r = s.residual.isEmpty ? nil : s.residual[i]
            hyperWeightBackward(compute, dW: s.dW[i], dBase: s.base.g, dCoef: s.coef.g, dE: e.g + i * dim,
                                coef: s.coef.w, e: e.w + i * dim, dim: dim, dA: r?.a.g, dB: r?.b.g,
                                a: r.map { CFPtr($0.a.w) }, b: r.map { CFPtr($0.b.w) }, rank: rank,
                                outDim: s.outDim, inDim: s.inDim)
            zero(s.dW[i], s.outDim * s.inDim)
        }
    }
}
