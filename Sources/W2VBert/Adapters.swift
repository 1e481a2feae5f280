// LoRA adapters on the Conformer blocks' Linear layers (issue 13). An `AdaptedLinear` is a block's
// Linear (q, k, v, out, fc1, fc2, pw1, pw2) with, when `adapter.targets` names it, a LoRA branch
//   y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ            A [r, in] (`NAME.lora_a`), B [out, r] (`NAME.lora_b`)
// (kernel: Tensor/LoRA.swift). With the base frozen (train.trainable = adapters) backward computes dx
// and the adapter gradients only: no weight-gradient GEMM, no bias gradient for W and b.

import Tensor

/// An adapter's parameters and its saved low-rank activation u = x·Aᵀ [N, r].
struct LoRAPG {
    let a: PG, b: PG
    let u: FPtr
    let rank: Int, scale: Float
    /// hyper-lora: a, b (and their gradients) hold one factor pair per utterance ([maxB, r·in], [maxB, out·r]);
    /// utterance b's rows of x are b·T ..< (b+1)·T with T = N / batch.
    var utterances: UtteranceCount? = nil
}

struct AdaptedLinear {
    let base: LinearPG
    let lora: LoRAPG?
    let frozen: Bool
    var compute: Compute { base.compute }

    init(_ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, c: BlockConfig,
         target: AdapterTarget, bias: Bool = true) {
        base = LinearPG(l, name, p, g, ar.compute, bias: bias, weight: c.generated[name + ".weight"])
        frozen = c.frozen
        if c.adapter.isHyper, c.adapter.adapts(target) {
            let site = name.split(separator: ".").suffix(2).joined(separator: ".")
            let f = c.hyperFactors[site]!
            lora = LoRAPG(a: PG(w: f.a, g: f.ga), b: PG(w: f.b, g: f.gb), u: ar.take(n * c.adapter.rank),
                          rank: c.adapter.rank, scale: c.adapter.scale, utterances: c.utterances)
        } else if c.adapter.adapts(target) {
            let r = c.adapter.rank
            lora = LoRAPG(a: PG(l, name + ".lora_a", p, g), b: PG(l, name + ".lora_b", p, g), u: ar.take(n * r),
                          rank: r, scale: c.adapter.scale)
        } else {
            lora = nil
        }
    }

    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        base.forward(y: y, x: x, n: n, inDim: inDim, outDim: outDim)
        if let lora, let count = lora.utterances {
            perUtteranceLoRAForward(compute, y: y, u: lora.u, x: x, a: lora.a.w, b: lora.b.w, scale: lora.scale, batch: count.batch,
                                    t: n / count.batch, inDim: inDim, outDim: outDim, rank: lora.rank)
        } else if let lora {
            loraForward(compute, y: y, u: lora.u, x: x, a: lora.a.w, b: lora.b.w, scale: lora.scale, n: n, inDim: inDim,
                        outDim: outDim, rank: lora.rank)
        }
    }

    /// Accumulates dx, or overwrites it (`write`), and the trainable weights' gradients; `du` is [N, r] scratch.
    func backward(dx: FPtr, du: FPtr, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int, write: GradientWrite = .accumulate) {
        var write = write
        if lora != nil && write == .overwrite {
            // The adapter's dx is added first, as always: zero, then accumulate (the same bits as before).
            zeroFill(dx, n: n * inDim)
            write = .accumulate
        }
        if let lora, let count = lora.utterances {
            perUtteranceLoRABackward(compute, dx: dx, dA: lora.a.g, dB: lora.b.g, du: du, dy: dy, x: x, u: lora.u, a: lora.a.w, b: lora.b.w,
                                     scale: lora.scale, batch: count.batch, t: n / count.batch, inDim: inDim, outDim: outDim, rank: lora.rank)
        } else if let lora {
            loraBackward(compute, dx: dx, dA: lora.a.g, dB: lora.b.g, du: du, dy: dy, x: x, u: lora.u, a: lora.a.w, b: lora.b.w,
                         scale: lora.scale, n: n, inDim: inDim, outDim: outDim, rank: lora.rank)
        }
        if frozen {
            linearBackward(compute, dx: dx, dWeight: nil, dBias: nil, dy: dy, x: x, weight: base.weight.w, n: n, inDim: inDim, outDim: outDim,
                           write: write)
        } else {
            base.backward(dx: dx, dy: dy, x: x, n: n, inDim: inDim, outDim: outDim, write: write)
        }
    }
}

/// The plain model an adapted one stands for: every adapted Linear's weight becomes W + (α/r)·B·A and the
/// adapter tensors go (`export-hf`, or any consumer without LoRA). `params` is in `layout` order of
/// `config`; returns the config without adapters and its parameters in that config's layout. The products
/// run with `compute`.
public func mergeAdapters(_ compute: Compute, config c: Config, layout l: ParameterLayout,
                          params: CFPtr) -> (Config, ParameterLayout, FloatBuffer) {
    precondition(!c.adapter.isHyper, "hyper-lora factors are per utterance: nothing to merge")
    var plain = c
    plain.adapter.kind = .none
    plain.train.trainable = .all
    let pl = ParameterLayout(config: plain)
    let out = FloatBuffer(count: pl.count)
    for e in pl.entries { (out.ptr + e.offset).update(from: params + l.entry(e.name).offset, count: e.count) }
    let r = c.adapter.rank, s = c.adapter.scale
    for e in l.entries where e.name.hasSuffix(".lora_a") {
        let base = String(e.name.dropLast(".lora_a".count))
        let a = l.entry(e.name), b = l.entry(base + ".lora_b"), w = pl.entry(base + ".weight")
        let (outDim, inDim) = (w.shape[0], w.shape[1])
        // W[out, in] += s · B[out, r] · A[r, in]
        gemm(compute, transA: false, transB: false, m: outDim, n: inDim, k: r, alpha: s, a: params + b.offset, lda: r,
             b: params + a.offset, ldb: inDim, beta: 1, c: out.ptr + w.offset, ldc: inDim)
    }
    return (plain, pl, out)
}
