// The Conformer stack's input: masking, context projection and positional convolution.
//   xm = z with the masked frames replaced (learned mask embedding, or N(0, σ²) noise from .maskNoise)
//   xp = context_proj(xm)   (xp = xm with model.context_proj false: the HF family)
//   x0 = xp + GELU(pos_conv(xp)) with padded frames zeroed first (position: conv), else x0 = xp

import Tensor

struct ContextInput {
    let maskEmbedding: PG?
    let contextProj: LinearPG?  // nil: model.context_proj false
    let posConv: LinearPG?  // weight [d, d/Gp, P], bias [d]
    let xm, noise, xp, pc, x0: FPtr  // [N, d], [S, d], [N, d], [N, d], [N, d]
    let posWork: FPtr  // grouped-conv workspace for posSlots threads
    let posSlots: Int
    let dxm, dPc: FPtr  // backward [N, d]
    let d, posGroups, posKernel: Int
    let noiseStd: Float
    let compute: Compute

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        maskEmbedding = c.mask.replacement == .learned ? PG(l, "mask_embedding", p, g) : nil
        compute = a.compute
        contextProj = c.model.contextProj ? LinearPG(l, "context_proj", p, g, compute) : nil
        posConv = c.model.position == .conv ? LinearPG(l, "pos_conv", p, g, compute) : nil
        d = c.model.dim
        posGroups = c.model.posConvGroups
        posKernel = c.model.posConvKernel
        noiseStd = c.mask.randomStd
        let n = cap.n
        xm = a.take(n * d)
        noise = a.take(cap.masked * d)
        xp = a.take(n * d)
        pc = a.take(n * d)
        x0 = a.take(n * d)
        posSlots = compute.threads
        posWork = a.take(
            posConv == nil
                ? 1
                : groupedConv1dWorkspaceCount(
                    t: cap.t, c: d, groups: posGroups,
                    p: posKernel, slots: posSlots))
        dxm = a.take(n * d)
        dPc = a.take(n * d)
    }

    /// xm = z with masked frames replaced, then `project`.
    func forward(z: CFPtr, frames: MaskedFrames, _ s: BatchShape, key: RandomKey, given: [Float]?) {
        let S = frames.count
        xm.update(from: z, count: s.n * d)
        if let me = maskEmbedding {
            for i in 0..<S { (xm + Int(frames.rows[i]) * d).update(from: me.w, count: d) }
        } else {
            if let given {
                precondition(given.count == S * d, "maskNoise override has the wrong size")
                given.withUnsafeBufferPointer { noise.update(from: $0.baseAddress!, count: S * d) }
            } else {
                var rng = key.stream(.maskNoise)
                rng.fillNormal(noise, S * d, std: noiseStd)
            }
            for i in 0..<S { (xm + Int(frames.rows[i]) * d).update(from: noise + i * d, count: d) }
        }
        project(xm, frames, s)
    }

    /// x0 from the (masked or whole) sequence x: context projection, then the positional convolution.
    func project(_ x: CFPtr, _ frames: MaskedFrames, _ s: BatchShape) {
        if let contextProj {
            contextProj.forward(y: xp, x: x, n: s.n, inDim: d, outDim: d)
        } else {
            xp.update(from: x, count: s.n * d)
        }
        if let posConv {
            zeroPadding(xp, lengths: frames.encoderLengths, b: s.b, t: s.t, c: d)
            groupedConv1dForward(
                compute, y: pc, work: posWork, slots: posSlots, x: xp, weight: posConv.weight.w,
                bias: posConv.bias!.w, b: s.b, t: s.t, c: d, groups: posGroups, p: posKernel)
            geluForward(y: x0, x: pc, n: s.n * d)
            axpy(x0, xp, n: s.n * d)
        } else {
            x0.update(from: xp, count: s.n * d)
        }
    }

    /// dx0 (overwritten) → dz += d(unmasked rows); masked rows go to the mask embedding (learned) or nowhere.
    func backward(dx0: FPtr, dz: FPtr, frames: MaskedFrames, _ s: BatchShape) {
        let n = s.n
        if let posConv {
            zero(dPc, n * d)
            geluBackward(dx: dPc, dy: dx0, x: pc, n: n * d)
            groupedConv1dBackward(
                compute, dx: dx0, dWeight: posConv.weight.g, dBias: posConv.bias!.g, work: posWork,
                slots: posSlots, dy: dPc, x: xp,
                weight: posConv.weight.w, b: s.b, t: s.t, c: d, groups: posGroups, p: posKernel)
            zeroPadding(dx0, lengths: frames.encoderLengths, b: s.b, t: s.t, c: d)
        }
        zero(dxm, n * d)
        if let contextProj {
            contextProj.backward(dx: dxm, dy: dx0, x: xm, n: n, inDim: d, outDim: d)
        } else {
            dxm.update(from: dx0, count: n * d)
        }
        for i in 0..<frames.count {
            let r = dxm + Int(frames.rows[i]) * d
            if let me = maskEmbedding { axpy(me.g, r, n: d) }
            r.update(repeating: 0, count: d)
        }
        axpy(dz, dxm, n: n * d)
    }
}
