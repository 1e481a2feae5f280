// LoRA adapters on the Conformer blocks' Linear layers (adapter.kind = lora). Each Linear that
// `adapter.targets` names (q, k, v, out, fc1, fc2, pw1, pw2) gets a low-rank branch
//   y = x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ            A [r, in] (`NAME.lora_a`), B [out, r] (`NAME.lora_b`)
// (kernel: Tensor/LoRA.swift). The tensors sit at the end of each block, so with the base frozen
// (train.trainable = adapters) a block's adapters are one contiguous range. Initialisation as in PyTorch
// LoRA/PEFT: A Kaiming-uniform (a = √5, U(±1/√in)), B zeros, so an added adapter starts as no change.

import Tensor

extension AdapterKind {
    public static let lora = AdapterKind(registered: "lora")
}

struct LoRAAdapter: ModelOption {
    static var adapterKind: String? { AdapterKind.lora.rawValue }
    let config: Config
    let sites: [(String, Int, Int)]

    init?(config c: Config) {
        guard c.adapter.kind == .lora else { return nil }
        config = c
        sites = ParameterLayout.adapterSites(c)
    }

    static func isAdapterTensor(_ name: String) -> Bool { name.hasSuffix(".lora_a") || name.hasSuffix(".lora_b") }

    func blockParameters(block p: String) -> [ParameterSpec] {
        let r = config.adapter.rank
        return sites.flatMap { site, out, inDim in
            [
                ParameterSpec(
                    name: "\(p).\(site).lora_a", shape: [r, inDim], initialization: .kaiming(fanIn: inDim),
                    decay: true),
                ParameterSpec(name: "\(p).\(site).lora_b", shape: [out, r], initialization: .zeros, decay: true)
            ]
        }
    }

    var branchScratch: Int { config.adapter.rank }

    func makeExtension(_ parts: ExtensionParts) -> any BlockExtension {
        LoRALinears(parts: parts, sites: Set(sites.map(\.0)), rank: config.adapter.rank, scale: config.adapter.scale)
    }
}

/// LoRA at run time: a branch on every adapted Linear, nothing per step.
struct LoRALinears: BlockExtension {
    let parts: ExtensionParts
    let sites: Set<String>
    let rank: Int, scale: Float

    func branch(_ s: LinearSite, arena: Arena) -> (any LinearBranch)? {
        guard sites.contains(s.site) else { return nil }
        let (l, p, g) = (parts.layout, parts.params, parts.grads)
        return LoRABranch(
            a: PG(l, s.name + ".lora_a", p, g), b: PG(l, s.name + ".lora_b", p, g),
            u: arena.take(s.rows * rank), rank: rank, scale: scale,
            compute: arena.compute)
    }
}

/// One Linear's adapter: its parameters and the saved low-rank activation u = x·Aᵀ [N, r].
struct LoRABranch: LinearBranch {
    let a: PG, b: PG
    let u: FPtr
    let rank: Int, scale: Float
    let compute: Compute

    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        loraForward(
            compute, y: y, u: u, x: x, a: a.w, b: b.w, scale: scale, n: n, inDim: inDim, outDim: outDim, rank: rank)
    }

    func backward(dx: FPtr, du: FPtr, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        loraBackward(
            compute, dx: dx, dA: a.g, dB: b.g, du: du, dy: dy, x: x, u: u, a: a.w, b: b.w,
            scale: scale, n: n, inDim: inDim, outDim: outDim, rank: rank)
    }
}

/// The plain model an adapted one stands for: every adapted Linear's weight becomes W + (α/r)·B·A and the
/// adapter tensors go (`export-hf`, or any consumer without LoRA). `params` is in `layout` order of
/// `config`; returns the config without adapters and its parameters in that config's layout. The products
/// run with `compute`.
public func mergeAdapters(
    _ compute: Compute, config c: Config, layout l: ParameterLayout,
    params: CFPtr
) -> (Config, ParameterLayout, FloatBuffer) {
    precondition(
        c.adapter.kind == .lora,
        "only LoRA adapters merge into their Linear weights (hyper-lora factors "
            + "are per utterance)")
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
        gemm(
            compute, transA: false, transB: false, m: outDim, n: inDim, k: r, alpha: s, a: params + b.offset, lda: r,
            b: params + a.offset, ldb: inDim, beta: 1, c: out.ptr + w.offset, ldc: inDim)
    }
    return (plain, pl, out)
}
