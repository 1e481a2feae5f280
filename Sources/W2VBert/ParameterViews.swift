// Views of named parameters: a parameter's value and gradient pointers (same offset in the params and
// grads buffers of a `ParameterLayout`), and the Linear / LayerNorm pairs built from them.

import Tensor

/// A parameter and its gradient (same offset in the params and grads buffers).
struct PG {
    let w: FPtr, g: FPtr
    init(_ layout: ParameterLayout, _ name: String, _ params: FPtr, _ grads: FPtr) {
        let o = layout.entry(name).offset
        w = params + o
        g = grads + o
    }
    /// A weight that lives outside the layout (e.g. a model option's generated weight and its gradient).
    init(w: FPtr, g: FPtr) {
        self.w = w
        self.g = g
    }
}

/// LayerNorm weight and bias.
struct NormPG {
    let weight: PG, bias: PG
    init(_ l: ParameterLayout, _ n: String, _ p: FPtr, _ g: FPtr) {
        weight = PG(l, n + ".weight", p, g)
        bias = PG(l, n + ".bias", p, g)
    }

    func forward(y: FPtr, mean: FPtr, rstd: FPtr, x: CFPtr, n: Int, c: Int) {
        layerNormForward(y: y, mean: mean, rstd: rstd, x: x, weight: weight.w, bias: bias.w, n: n, c: c)
    }
    /// forward's y again from the mean and rstd it saved (bit-identical).
    func apply(y: FPtr, mean: CFPtr, rstd: CFPtr, x: CFPtr, n: Int, c: Int) {
        layerNormApply(y: y, x: x, mean: mean, rstd: rstd, weight: weight.w, bias: bias.w, n: n, c: c)
    }
    func backward(
        dx: FPtr, dy: CFPtr, x: CFPtr, mean: CFPtr, rstd: CFPtr, n: Int, c: Int,
        write: GradientWrite = .accumulate
    ) {
        layerNormBackward(
            dx: dx, dWeight: weight.g, dBias: bias.g, dy: dy, x: x, weight: weight.w, mean: mean,
            rstd: rstd, n: n, c: c, write: write)
    }
}

/// Linear weight [out, in] and optional bias [out].
struct LinearPG {
    let weight: PG, bias: PG?
    let compute: Compute
    init(
        _ l: ParameterLayout, _ n: String, _ p: FPtr, _ g: FPtr, _ compute: Compute, bias hasBias: Bool = true,
        weight given: PG? = nil
    ) {
        self.compute = compute
        weight = given ?? PG(l, n + ".weight", p, g)
        bias = hasBias ? PG(l, n + ".bias", p, g) : nil
    }
    func forward(y: FPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int) {
        linearForward(compute, y: y, x: x, weight: weight.w, bias: bias?.w, n: n, inDim: inDim, outDim: outDim)
    }
    func backward(dx: FPtr?, dy: CFPtr, x: CFPtr, n: Int, inDim: Int, outDim: Int, write: GradientWrite = .accumulate) {
        linearBackward(
            compute, dx: dx, dWeight: weight.g, dBias: bias?.g, dy: dy, x: x, weight: weight.w, n: n,
            inDim: inDim, outDim: outDim, write: write)
    }
}

@inline(__always) func zero(_ p: FPtr, _ n: Int) { zeroFill(p, n: n) }
