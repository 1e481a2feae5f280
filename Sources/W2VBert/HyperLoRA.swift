// Speaker adapters (issue 13, adapter.kind = hyper-lora): a hypernetwork makes every block's LoRA factors
// (for adapter.targets) from the utterance's speaker vector s [S] and a learned layer embedding e_l [E]:
// s_b      = tanh(P · mean_{t < len_b} z_{b,t} + p)         adapter.speaker = signal: P = speaker.proj.weight [S, d], z
// the feature encoder output
// s_b      = table[row_b]                                   adapter.speaker = table: speaker.table [N + 1, S], row_b
// the
//                                                             utterance's speaker (BatchView.speakers), N = unknown
//   h_{b,l}  = [s_b; e_l]  (H = S + E)                         e_l = hyperlora.layer_embedding[l]
//   A_{b,l}  = Σ_k h_{b,l}[k] · gen_a[k]   [r, in]             gen_a = hyperlora.SITE.gen_a [H, r, in]
//   B_{b,l}  = Σ_k h_{b,l}[k] · gen_b[k]   [out, r]            gen_b = hyperlora.SITE.gen_b [H, out, r] (zeros)
//   y_b      = x_b·Wᵀ + b + (α/r)·(x_b·A_{b,l}ᵀ)·B_{b,l}ᵀ       per utterance b (its T rows), kernel Tensor/LoRA.swift
// `generate` runs after the feature encoder (every forward and embed); the blocks' adapted Linear layers
// accumulate dA_{b,l}, dB_{b,l}; `backward(block:)` (right after that block's backward) turns them into
// gradients of gen_a, gen_b, e_l and ds_b; `finish` (after all blocks) takes ds through tanh and P into
// P, p and (base trainable) dz, or (table) adds ds_b to row_b of the table's gradient. The generator is linear in h:
// cheap (one [B, H]·[H, r·(in+out)] GEMM per
// block and site) and exactly mirrored.

import Tensor

/// The number of utterances of the current micro-batch, shared by every hyper-lora Linear.
final class UtteranceCount { var batch = 1 }

/// Whether the current micro-batch came with speaker indices (adapter.speaker = table).
final class RowsGiven { var value = false }

/// One block's generated factors of one site, per utterance: A [maxB, r·in], B [maxB, out·r] and gradients.
struct HyperLoRAFactors { let a, b, ga, gb: FPtr }

struct HyperLoRA {
    struct Site {
        let site: String, outDim: Int, inDim: Int
        let genA: PG, genB: PG
        let factors: [HyperLoRAFactors]     // per block
    }
    let sites: [Site]
    let proj: PG?, projBias: PG?, embedding: PG?
    let table: PG?                          // adapter.speaker = table: [N + 1, S]
    let count: UtteranceCount
    let pooled, s, ds, h, dh: FPtr           // [maxB, d], [maxB, S], [maxB, S], [maxB, H], [maxB, H]
    let rows: UnsafeMutablePointer<Int32>    // [maxB] the micro-batch's speaker indices (table), copied at generate
    let rowsGiven: RowsGiven                 // the micro-batch gave speaker indices (else: all unknown)
    let speakerDim, layerDim, rank, d, unknownRow: Int
    let compute: Compute

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ ar: Arena, config c: Config, maxBatch: Int, blocks: Int) {
        compute = ar.compute
        let a = c.adapter
        speakerDim = a.speakerDim
        layerDim = a.layerDim
        rank = a.rank
        d = c.model.dim
        count = UtteranceCount()
        let on = a.isHyper, signal = on && !a.isTable
        let H = speakerDim + layerDim, mb = on ? maxBatch : 0
        proj = signal ? PG(l, "speaker.proj.weight", p, g) : nil
        projBias = signal ? PG(l, "speaker.proj.bias", p, g) : nil
        table = on && a.isTable ? PG(l, "speaker.table", p, g) : nil
        unknownRow = a.speakers
        rowsGiven = RowsGiven()
        embedding = on ? PG(l, "hyperlora.layer_embedding", p, g) : nil
        pooled = ar.take(signal ? mb * d : 0)
        s = ar.take(mb * speakerDim)
        ds = ar.take(mb * speakerDim)
        rows = ar.takeInt32(a.isTable ? mb : 0)
        h = ar.take(mb * H)
        dh = ar.take(mb * H)
        let r = a.rank
        sites = !on ? [] : ParameterLayout.adapterSites(c).map { site, out, inDim in
            Site(site: site, outDim: out, inDim: inDim,
                 genA: PG(l, "hyperlora.\(site).gen_a", p, g), genB: PG(l, "hyperlora.\(site).gen_b", p, g),
                 factors: (0..<blocks).map { _ in
                     HyperLoRAFactors(a: ar.take(mb * r * inDim), b: ar.take(mb * out * r),
                                      ga: ar.take(mb * r * inDim), gb: ar.take(mb * out * r))
                 })
        }
    }

    var enabled: Bool { embedding != nil }

    /// Block i's factors by site name ("attn.q", "ffn1.fc1", …).
    func factors(block i: Int) -> [String: HyperLoRAFactors] {
        var out: [String: HyperLoRAFactors] = [:]
        for s in sites { out[s.site] = s.factors[i] }
        return out
    }

    /// h_{b,l} = [s_b; e_l] for every utterance into `h`.
    private func fillH(block i: Int, batch: Int) {
        let H = speakerDim + layerDim
        for b in 0..<batch {
            (h + b * H).update(from: s + b * speakerDim, count: speakerDim)
            (h + b * H + speakerDim).update(from: embedding!.w + i * layerDim, count: layerDim)
        }
    }

    /// The speaker vectors and every block's factors for a micro-batch (z [B, T, d], encoder lengths; `speakers`
    /// [B] the table's speaker indices, nil or −1: unknown).
    func generate(z: CFPtr, lengths: UnsafePointer<Int32>, speakers: UnsafePointer<Int32>?, batch: Int, t: Int) {
        guard enabled else { return }
        count.batch = batch
        let H = speakerDim + layerDim
        if let table {
            rowsGiven.value = speakers != nil
            if let speakers { rows.update(from: speakers, count: batch) }
            speakerTableForward(s: s, table: table.w, rows: speakers == nil ? nil : UnsafePointer(rows),
                                unknown: unknownRow, batch: batch, dim: speakerDim)
        } else if let proj, let projBias {
            speakerEncoderForward(compute, s: s, pooled: pooled, z: z, lengths: lengths, weight: proj.w,
                                  bias: projBias.w, batch: batch, t: t, d: d, dim: speakerDim)
        }
        zero(ds, batch * speakerDim)
        for i in 0..<(sites.first?.factors.count ?? 0) {
            fillH(block: i, batch: batch)
            for st in sites {
                let f = st.factors[i], na = rank * st.inDim, nb = st.outDim * rank
                hyperFactorsForward(compute, f: f.a, h: h, gen: st.genA.w, batch: batch, hDim: H, count: na)
                hyperFactorsForward(compute, f: f.b, h: h, gen: st.genB.w, batch: batch, hDim: H, count: nb)
                zero(f.ga, batch * na)
                zero(f.gb, batch * nb)
            }
        }
    }

    /// After block i's backward: dA, dB → gradients of gen_a, gen_b, e_i and ds.
    func backward(block i: Int) {
        guard let embedding else { return }
        let batch = count.batch, S = speakerDim, H = speakerDim + layerDim
        fillH(block: i, batch: batch)
        zero(dh, batch * H)
        for st in sites {
            let f = st.factors[i], na = rank * st.inDim, nb = st.outDim * rank
            hyperFactorsBackward(compute, dGen: st.genA.g, dh: dh, dF: f.ga, h: h, gen: st.genA.w, batch: batch,
                                 hDim: H, count: na)
            hyperFactorsBackward(compute, dGen: st.genB.g, dh: dh, dF: f.gb, h: h, gen: st.genB.w, batch: batch,
                                 hDim: H, count: nb)
            zero(f.ga, batch * na)
            zero(f.gb, batch * nb)
        }
        for b in 0..<batch {
            for k in 0..<S { ds[b * S + k] += dh[b * H + k] }
            for k in 0..<layerDim { embedding.g[i * layerDim + k] += dh[b * H + S + k] }
        }
    }

    /// After all blocks: ds → gradients of the speaker encoder and, when `dz` is given, dz (accumulated) at
    /// each utterance's valid frames (d mean / dz_t = 1/len); or (table) ds_b added to row_b's gradient.
    func finish(dz: FPtr?, lengths: UnsafePointer<Int32>, t: Int) {
        if let table {
            speakerTableBackward(dTable: table.g, ds: ds, rows: rowsGiven.value ? UnsafePointer(rows) : nil,
                                 unknown: unknownRow, batch: count.batch, dim: speakerDim)
            return
        }
        guard let proj, let projBias else { return }
        speakerEncoderBackward(compute, dz: dz, dWeight: proj.g, dBias: projBias.g, ds: ds, s: s, pooled: pooled,
                               weight: proj.w, lengths: lengths, batch: count.batch, t: t, d: d, dim: speakerDim)
    }
}
