// Speaker adapters (adapter.kind = hyper-lora): a hypernetwork makes every block's LoRA factors (for
// adapter.targets) from the utterance's speaker vector s [S] and a learned layer embedding e_l [E]:
//   s_b      = tanh(P · mean_{t < len_b} z_{b,t} + p)   adapter.speaker = signal: P = speaker.proj.weight [S, d],
//                                                       z the feature encoder output
//   s_b      = table[row_b]                             adapter.speaker = table: speaker.table [N + 1, S], row_b
//                                                       the utterance's conditioning index, N = unknown speaker
//   h_{b,l}  = [s_b; e_l]  (H = S + E)                  e_l = hyperlora.layer_embedding[l]
//   A_{b,l}  = Σ_k h_{b,l}[k] · gen_a[k]   [r, in]       gen_a = hyperlora.SITE.gen_a [H, r, in]
//   B_{b,l}  = Σ_k h_{b,l}[k] · gen_b[k]   [out, r]      gen_b = hyperlora.SITE.gen_b [H, out, r] (zeros)
//   y_b      = x_b·Wᵀ + b + (α/r)·(x_b·A_{b,l}ᵀ)·B_{b,l}ᵀ per utterance b (its T rows)
// (kernels: Tensor/PerUtteranceLoRA.swift). `generate` runs after the feature encoder (every forward and
// embed); the blocks' adapted Linear layers accumulate dA_{b,l}, dB_{b,l}; `backward(block:)` (right after
// that block's backward) turns them into gradients of gen_a, gen_b, e_l and ds_b; `finish` (after all
// blocks) takes ds through tanh and P into P, p and (base trainable) dz, or (table) adds ds_b to row_b of
// the table's gradient. The generator is linear in h: cheap (one [B, H]·[H, r·(in+out)] GEMM per block and
// site) and exactly mirrored.

import Tensor

extension AdapterKind {
    public static let hyperLora = AdapterKind(registered: "hyper-lora")
}

struct HyperLoRA: ModelOption {
    static var adapterKind: String? { AdapterKind.hyperLora.rawValue }
    let config: Config
    let sites: [(String, Int, Int)]

    init?(config c: Config) {
        guard c.adapter.kind == .hyperLora else { return nil }
        config = c
        sites = ParameterLayout.adapterSites(c)
    }

    static func isAdapterTensor(_ name: String) -> Bool { name.hasPrefix("hyperlora.") || name.hasPrefix("speaker.") }

    /// The speaker encoder s = tanh(proj · mean_t z) or (adapter.speaker = table) the speaker table
    /// s = table[row] (N known speakers, N(0, 1); the last row, unknown speakers, zeros), and the shared
    /// generator of every block's LoRA factors, A = Σ_k h_k·gen_a[k], B = Σ_k h_k·gen_b[k] (gen_b zeros).
    var sharedParameters: [ParameterSpec] {
        let a = config.adapter, m = config.model, d = m.dim, h = a.speakerDim + a.layerDim
        var out: [ParameterSpec] = []
        if a.isTable {
            out.append(
                ParameterSpec(
                    name: "speaker.table", shape: [a.speakers + 1, a.speakerDim],
                    initialization: .normalZeroTail(std: 1, zeroTail: a.speakerDim), decay: false))
        } else {
            out.append(
                ParameterSpec(
                    name: "speaker.proj.weight", shape: [a.speakerDim, d],
                    initialization: .kaiming(fanIn: d), decay: true))
            out.append(
                ParameterSpec(
                    name: "speaker.proj.bias", shape: [a.speakerDim], initialization: .zeros,
                    decay: false))
        }
        let blocks = m.contrastiveBlocks + m.mlmBlocks
        out.append(
            ParameterSpec(
                name: "hyperlora.layer_embedding", shape: [blocks, a.layerDim],
                initialization: .normal(std: 1), decay: false))
        for (site, outDim, inDim) in sites {
            out.append(
                ParameterSpec(
                    name: "hyperlora.\(site).gen_a", shape: [h, a.rank, inDim],
                    initialization: .kaiming(fanIn: inDim * h), decay: true))
            out.append(
                ParameterSpec(
                    name: "hyperlora.\(site).gen_b", shape: [h, outDim, a.rank],
                    initialization: .zeros, decay: true))
        }
        return out
    }

    var branchScratch: Int { config.adapter.rank }

    func makeExtension(_ parts: ExtensionParts) -> any BlockExtension { HyperLoRAGenerator(parts, sites: sites) }
}

/// The number of utterances of the current micro-batch, shared by every hyper-lora Linear.
final class UtteranceCount { var batch = 1 }

/// Whether the current micro-batch came with conditioning indices (adapter.speaker = table).
final class RowsGiven { var value = false }

/// One block's generated factors of one site, per utterance: A [maxB, r·in], B [maxB, out·r] and gradients.
struct UtteranceFactors { let a, b, ga, gb: FPtr }

/// A Linear's hyper-lora branch: LoRA with each utterance's own factors (utterance b: rows b·T ..< (b+1)·T).
struct PerUtteranceLoRABranch: LinearBranch {
    let factors: UtteranceFactors
    let u: FPtr  // [N, r] saved x·Aᵀ
    let rank: Int, scale: Float
    let count: UtteranceCount
    let compute: Compute

    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        perUtteranceLoRAForward(
            compute, y: y, u: u, x: x, a: factors.a, b: factors.b, scale: scale, batch: count.batch,
            t: n / count.batch, inDim: inDim, outDim: outDim, rank: rank)
    }

    func backward(dx: FPtr, du: FPtr, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        perUtteranceLoRABackward(
            compute, dx: dx, dA: factors.ga, dB: factors.gb, du: du, dy: dy, x: x, u: u, a: factors.a,
            b: factors.b, scale: scale, batch: count.batch, t: n / count.batch, inDim: inDim,
            outDim: outDim, rank: rank)
    }
}
