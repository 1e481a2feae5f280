// A Linear layer of a Conformer block (q, k, v, out, fc1, fc2, pw1, pw2) with what the model options
// attach to it (Options/ModelOption.swift): a generated weight in place of the layout's, and branches
// whose outputs are added to y = x·Wᵀ + b. With the base frozen (train.trainable = adapters) backward
// computes dx and the branches' gradients only: no weight-gradient GEMM, no bias gradient for W and b.

import Tensor

struct BlockLinear {
    let base: LinearPG
    let branches: [any LinearBranch]
    let frozen: Bool

    /// `name`: the Linear's parameter prefix ("contrastive.blocks.0.attn.q"); `c.block`, `c.extensions`:
    /// the block's index and the active options.
    init(
        _ l: ParameterLayout, _ name: String, _ p: FPtr, _ g: FPtr, _ ar: Arena, n: Int, c: BlockConfig,
        bias: Bool = true
    ) {
        let site = LinearSite(block: c.block, name: name, rows: n)
        base = LinearPG(l, name, p, g, ar.compute, bias: bias, weight: c.extensions.weight(site))
        frozen = c.frozen
        branches = c.extensions.branches(site, arena: ar)
    }

    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        base.forward(y: y, x: x, n: n, inDim: inDim, outDim: outDim)
        for b in branches { b.forward(y: y, x: x, n: n, inDim: inDim, outDim: outDim) }
    }

    /// Accumulates dx, or overwrites it (`write`), and the trainable weights' gradients; `du` is [N, r] scratch.
    func backward(
        dx: FPtr, du: FPtr, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int,
        write: GradientWrite = .accumulate
    ) {
        var write = write
        if !branches.isEmpty && write == .overwrite {
            // The branches' dx is added first: zero, then accumulate.
            zeroFill(dx, n: n * inDim)
            write = .accumulate
        }
        for b in branches { b.backward(dx: dx, du: du, dy: dy, x: x, n: n, inDim: inDim, outDim: outDim) }
        if frozen {
            linearBackward(
                base.compute, dx: dx, dWeight: nil, dBias: nil, dy: dy, x: x, weight: base.weight.w, n: n, inDim: inDim,
                outDim: outDim, write: write)
        } else {
            base.backward(dx: dx, dy: dy, x: x, n: n, inDim: inDim, outDim: outDim, write: write)
        }
    }
}
