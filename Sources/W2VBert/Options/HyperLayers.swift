// Hypernetwork layers (model.hypernetwork = ffn | ffn+conv): one shared generator produces the named
// weights of every Conformer block from a learned layer embedding e_l [E]:
//   W_l = base + Σ_k e_l[k]·coef[k] (+ B_l·A_l with model.hyper_rank > 0)    (kernel: Tensor/Hyper.swift)
// `generate` materialises every block's weights at the start of each forward; the blocks' Linear layers
// read them and accumulate their weight gradients into a per-block dW_l; `backward(block:)` (right after
// that block's backward) turns dW_l into the gradients of base, coef, e_l and the residual, and clears dW_l.
// For a fixed set of layers a linear generator spans the same weights as a deeper one with E outputs.

import Tensor

/// A block weight the hypernetwork generates: its site within the block, shape and initialisation.
typealias GeneratedSite = (site: String, outDim: Int, inDim: Int, initialization: ParameterInit)

extension ParameterLayout {
    /// The block weights a hypernetwork generates (model.hypernetwork), in layout order.
    static func hyperSites(_ c: Config) -> [GeneratedSite] {
        let d = c.model.dim, f = c.model.ffnDim
        var out: [GeneratedSite] = []
        if c.model.hypernetwork == .none { return out }
        for ffn in ["ffn1", "ffn2"] {
            out.append(("\(ffn).fc1", f, d, .normal(std: 0.02)))
            out.append(("\(ffn).fc2", d, f, .normal(std: 0.02)))
        }
        if c.model.hypernetwork == .ffnConv {
            out.append(("conv.pw1", 2 * d, d, .kaiming(fanIn: d)))
            out.append(("conv.pw2", d, d, .kaiming(fanIn: d)))
        }
        return out
    }
}

struct HyperLayers: ModelOption {
    let config: Config
    let sites: [GeneratedSite]

    init?(config c: Config) {
        guard c.model.hypernetwork != .none else { return nil }
        config = c
        sites = ParameterLayout.hyperSites(c)
    }

    /// The per-layer low-rank residual of each generated weight (B zeros).
    func blockParameters(block p: String) -> [ParameterSpec] {
        let r = config.model.hyperRank
        guard r > 0 else { return [] }
        return sites.flatMap { h in
            [
                ParameterSpec(
                    name: "\(p).\(h.site).res_a", shape: [r, h.inDim], initialization: .kaiming(fanIn: h.inDim),
                    decay: true),
                ParameterSpec(name: "\(p).\(h.site).res_b", shape: [h.outDim, r], initialization: .zeros, decay: true)
            ]
        }
    }

    /// A layer embedding table and, per generated weight, base + coefficients (coef zeros: training starts
    /// from one weight shared by all blocks).
    var sharedParameters: [ParameterSpec] {
        let m = config.model
        let blocks = m.contrastiveBlocks + m.mlmBlocks
        var out = [
            ParameterSpec(
                name: "hypernet.layer_embedding", shape: [blocks, m.hyperDim],
                initialization: .normal(std: 1), decay: false)
        ]
        for h in sites {
            out.append(
                ParameterSpec(
                    name: "hypernet.\(h.site).base", shape: [h.outDim, h.inDim],
                    initialization: h.initialization, decay: true))
            out.append(
                ParameterSpec(
                    name: "hypernet.\(h.site).coef", shape: [m.hyperDim, h.outDim, h.inDim],
                    initialization: .zeros, decay: true))
        }
        return out
    }

    func generatesWeight(site: String) -> Bool { sites.contains { $0.site == site } }

    func makeExtension(_ parts: ExtensionParts) -> any BlockExtension { GeneratedWeights(parts, sites: sites) }
}

/// The hypernetwork at run time: every block's generated weights and their gradients.
struct GeneratedWeights: BlockExtension {
    struct Site {
        let site: String, outDim: Int, inDim: Int
        let base: PG, coef: PG
        let residual: [(a: PG, b: PG)]  // per block (empty with hyper_rank 0)
        let w: [FPtr], dW: [FPtr]  // per block, generated weight and its gradient
    }
    let sites: [Site]
    let embedding: PG
    let dim, rank: Int
    let compute: Compute

    init(_ parts: ExtensionParts, sites hs: [GeneratedSite]) {
        let (l, p, g, ar, c) = (parts.layout, parts.params, parts.grads, parts.arena, parts.config)
        compute = ar.compute
        dim = c.model.hyperDim
        rank = c.model.hyperRank
        embedding = PG(l, "hypernet.layer_embedding", p, g)
        let names = parts.blockNames
        sites = hs.map { h in
            let residual =
                c.model.hyperRank == 0
                ? []
                : names.map {
                    (a: PG(l, "\($0).\(h.site).res_a", p, g), b: PG(l, "\($0).\(h.site).res_b", p, g))
                }
            return Site(
                site: h.site, outDim: h.outDim, inDim: h.inDim,
                base: PG(l, "hypernet.\(h.site).base", p, g), coef: PG(l, "hypernet.\(h.site).coef", p, g),
                residual: residual,
                w: names.map { _ in ar.take(h.outDim * h.inDim) },
                dW: names.map { _ in ar.take(h.outDim * h.inDim) })
        }
    }

    /// Block i's generated weight of this Linear site, if the hypernetwork makes it.
    func weight(_ s: LinearSite) -> PG? {
        sites.first { $0.site == s.site }.map { PG(w: $0.w[s.block], g: $0.dW[s.block]) }
    }

    /// W_l for every block.
    func generate(_ step: StepConditioning) {
        let e = embedding
        for s in sites {
            for i in s.w.indices {
                let r = s.residual.isEmpty ? nil : s.residual[i]
                hyperWeightForward(
                    compute, w: s.w[i], base: s.base.w, coef: s.coef.w, e: e.w + i * dim, dim: dim,
                    a: r.map { CFPtr($0.a.w) }, b: r.map { CFPtr($0.b.w) },
                    rank: rank, outDim: s.outDim, inDim: s.inDim)
            }
        }
    }

    /// After block i's backward: dW_l → gradients of base, coef, e_l, residual; dW_l cleared.
    func backward(block i: Int) {
        let e = embedding
        for s in sites {
            let r = s.residual.isEmpty ? nil : s.residual[i]
            hyperWeightBackward(
                compute, dW: s.dW[i], dBase: s.base.g, dCoef: s.coef.g, dE: e.g + i * dim, coef: s.coef.w,
                e: e.w + i * dim, dim: dim, dA: r?.a.g, dB: r?.b.g,
                a: r.map { CFPtr($0.a.w) }, b: r.map { CFPtr($0.b.w) }, rank: rank,
                outDim: s.outDim, inDim: s.inDim)
            zero(s.dW[i], s.outDim * s.inDim)
        }
    }
}
