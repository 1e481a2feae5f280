import Tensor

/// The settings of these tests' products: fp32 on one thread (the references they are checked against).
private let compute = Compute.fp32()

/// The part of the hyper-lora chain after the speaker vectors, composed as the model does it: h_b = [s_b; e],
/// A = h·gen_a, B = h·gen_b (the linear generator), y = per-utterance LoRA of x with A_b, B_b. Shared by the
/// chain tests of both speaker sources (HyperLoRAKernelTests: signal, SpeakerTableKernelTests: table).
final class FactorChain {
    let batch, t, S, E, i, o, r: Int
    let scale: Float
    let GA, Gb, X, h, A, B, y, u: FloatBuffer
    let e: [Float]
    // backward: accumulated over calls (de, dga, dgb, dx) and per-call scratch
    let de, dga, dgb, dx, dA, dB, du, dh, ds: FloatBuffer
    var H: Int { S + E }

    init(
        e: [Float], genA: [Float], genB: [Float], x: [Float], batch: Int, t: Int, S: Int, inDim: Int, outDim: Int,
        rank: Int, scale: Double
    ) {
        self.batch = batch
        self.t = t
        self.S = S
        E = e.count
        i = inDim
        o = outDim
        r = rank
        self.scale = Float(scale)
        self.e = e
        GA = FloatBuffer(genA)
        Gb = FloatBuffer(genB)
        X = FloatBuffer(x)
        let H = S + e.count
        h = FloatBuffer(count: batch * H)
        A = FloatBuffer(count: batch * r * inDim)
        B = FloatBuffer(count: batch * outDim * r)
        y = FloatBuffer(count: batch * t * outDim)
        u = FloatBuffer(count: batch * t * r)
        de = FloatBuffer(count: E)
        dga = FloatBuffer(count: GA.count)
        dgb = FloatBuffer(count: Gb.count)
        dx = FloatBuffer(count: X.count)
        dA = FloatBuffer(count: A.count)
        dB = FloatBuffer(count: B.count)
        du = FloatBuffer(count: u.count)
        dh = FloatBuffer(count: batch * H)
        ds = FloatBuffer(count: batch * S)
    }

    /// y [B, T, out] from the speaker vectors s [B, S].
    func forward(_ s: CFPtr) -> [Float] {
        for b in 0..<batch {
            for k in 0..<S { h[b * H + k] = s[b * S + k] }
            for k in 0..<E { h[b * H + S + k] = e[k] }
        }
        hyperFactorsForward(compute, f: A.ptr, h: h.ptr, gen: GA.ptr, batch: batch, hDim: H, count: r * i)
        hyperFactorsForward(compute, f: B.ptr, h: h.ptr, gen: Gb.ptr, batch: batch, hDim: H, count: o * r)
        perUtteranceLoRAForward(
            compute, y: y.ptr, u: u.ptr, x: X.ptr, a: A.ptr, b: B.ptr, scale: scale, batch: batch,
            t: t, inDim: i, outDim: o, rank: r)
        return y.array
    }

    /// Backward of forward for dy: accumulates de, dga, dgb, dx and returns ds [B, S] (overwritten per call).
    func backward(_ dy: FloatBuffer) -> FPtr {
        dA.zero()
        dB.zero()
        dh.zero()
        perUtteranceLoRABackward(
            compute, dx: dx.ptr, dA: dA.ptr, dB: dB.ptr, du: du.ptr, dy: dy.ptr, x: X.ptr,
            u: u.ptr, a: A.ptr, b: B.ptr,
            scale: scale, batch: batch, t: t, inDim: i, outDim: o, rank: r)
        hyperFactorsBackward(
            compute, dGen: dga.ptr, dh: dh.ptr, dF: dA.ptr, h: h.ptr, gen: GA.ptr, batch: batch,
            hDim: H, count: r * i)
        hyperFactorsBackward(
            compute, dGen: dgb.ptr, dh: dh.ptr, dF: dB.ptr, h: h.ptr, gen: Gb.ptr, batch: batch,
            hDim: H, count: o * r)
        for b in 0..<batch {
            for k in 0..<S { ds[b * S + k] = dh[b * H + k] }
            for k in 0..<E { de[k] += dh[b * H + S + k] }
        }
        return ds.ptr
    }
}
