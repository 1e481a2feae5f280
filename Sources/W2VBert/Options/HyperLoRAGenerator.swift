// hyper-lora at run time (the option and its equations: HyperLoRA.swift): the speaker vectors of a
// micro-batch, every block's per-utterance LoRA factors generated from them, and the mirrored backward.

import Tensor

struct HyperLoRAGenerator: BlockExtension {
    struct Site {
        let site: String, outDim: Int, inDim: Int
        let genA: PG, genB: PG
        let factors: [UtteranceFactors]  // per block
    }
    let sites: [Site]
    let proj: PG?, projBias: PG?  // adapter.speaker = signal
    let table: PG?  // adapter.speaker = table: [N + 1, S]
    let embedding: PG
    let count: UtteranceCount
    let pooled, s, ds, h, dh: FPtr  // [maxB, d], [maxB, S], [maxB, S], [maxB, H], [maxB, H]
    let rows: UnsafeMutablePointer<Int32>  // [maxB] the micro-batch's conditioning indices (table)
    let rowsGiven: RowsGiven  // the micro-batch gave conditioning indices (else: all unknown)
    let speakerDim, layerDim, rank, d, unknownRow: Int
    let compute: Compute
    let scale: Float

    init(_ parts: ExtensionParts, sites adapted: [(String, Int, Int)]) {
        let (l, p, g, ar, c) = (parts.layout, parts.params, parts.grads, parts.arena, parts.config)
        compute = ar.compute
        let a = c.adapter
        speakerDim = a.speakerDim
        layerDim = a.layerDim
        rank = a.rank
        scale = a.scale
        d = c.model.dim
        count = UtteranceCount()
        let signal = !a.isTable
        let H = speakerDim + layerDim, mb = parts.maxBatch
        proj = signal ? PG(l, "speaker.proj.weight", p, g) : nil
        projBias = signal ? PG(l, "speaker.proj.bias", p, g) : nil
        table = a.isTable ? PG(l, "speaker.table", p, g) : nil
        unknownRow = a.speakers
        rowsGiven = RowsGiven()
        embedding = PG(l, "hyperlora.layer_embedding", p, g)
        pooled = ar.take(signal ? mb * d : 0)
        s = ar.take(mb * speakerDim)
        ds = ar.take(mb * speakerDim)
        rows = ar.takeInt32(a.isTable ? mb : 0)
        h = ar.take(mb * H)
        dh = ar.take(mb * H)
        let r = a.rank, blocks = parts.blockNames.count
        sites = adapted.map { site, out, inDim in
            Site(
                site: site, outDim: out, inDim: inDim,
                genA: PG(l, "hyperlora.\(site).gen_a", p, g), genB: PG(l, "hyperlora.\(site).gen_b", p, g),
                factors: (0..<blocks).map { _ in
                    UtteranceFactors(
                        a: ar.take(mb * r * inDim), b: ar.take(mb * out * r),
                        ga: ar.take(mb * r * inDim), gb: ar.take(mb * out * r))
                })
        }
    }

    func branch(_ site: LinearSite, arena: Arena) -> (any LinearBranch)? {
        guard let st = sites.first(where: { $0.site == site.site }) else { return nil }
        return PerUtteranceLoRABranch(
            factors: st.factors[site.block], u: arena.take(site.rows * rank), rank: rank,
            scale: scale, count: count, compute: arena.compute)
    }

    var utteranceVectors: (values: CFPtr, dim: Int)? { (CFPtr(s), speakerDim) }

    /// h_{b,l} = [s_b; e_l] for every utterance into `h`.
    private func fillH(block i: Int, batch: Int) {
        let H = speakerDim + layerDim
        for b in 0..<batch {
            (h + b * H).update(from: s + b * speakerDim, count: speakerDim)
            (h + b * H + speakerDim).update(from: embedding.w + i * layerDim, count: layerDim)
        }
    }

    /// The speaker vectors and every block's factors for a micro-batch (z [B, T, d], encoder lengths;
    /// conditioning [B] the table's rows, nil or −1: unknown).
    func generate(_ step: StepConditioning) {
        let batch = step.batch
        count.batch = batch
        let H = speakerDim + layerDim
        if let table {
            rowsGiven.value = step.conditioning != nil
            if let given = step.conditioning { rows.update(from: given, count: batch) }
            speakerTableForward(
                s: s, table: table.w, rows: step.conditioning == nil ? nil : UnsafePointer(rows),
                unknown: unknownRow, batch: batch, dim: speakerDim)
        } else if let proj, let projBias {
            speakerEncoderForward(
                compute, s: s, pooled: pooled, z: step.z, lengths: step.lengths, weight: proj.w,
                bias: projBias.w, batch: batch, t: step.t, d: d, dim: speakerDim)
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
        let batch = count.batch, S = speakerDim, H = speakerDim + layerDim
        fillH(block: i, batch: batch)
        zero(dh, batch * H)
        for st in sites {
            let f = st.factors[i], na = rank * st.inDim, nb = st.outDim * rank
            hyperFactorsBackward(
                compute, dGen: st.genA.g, dh: dh, dF: f.ga, h: h, gen: st.genA.w, batch: batch, hDim: H,
                count: na)
            hyperFactorsBackward(
                compute, dGen: st.genB.g, dh: dh, dF: f.gb, h: h, gen: st.genB.w, batch: batch, hDim: H,
                count: nb)
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
            speakerTableBackward(
                dTable: table.g, ds: ds, rows: rowsGiven.value ? UnsafePointer(rows) : nil,
                unknown: unknownRow, batch: count.batch, dim: speakerDim)
            return
        }
        guard let proj, let projBias else { return }
        speakerEncoderBackward(
            compute, dz: dz, dWeight: proj.g, dBias: projBias.g, ds: ds, s: s, pooled: pooled,
            weight: proj.w, lengths: lengths, batch: count.batch, t: t, d: d, dim: speakerDim)
    }
}
