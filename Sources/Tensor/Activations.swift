import CCompute
#if canImport(Glibc)
    import Glibc
#endif

// Elementwise activations over n values. Backward accumulates dx += dy·f'(x).

@inline(__always) public func sigmoid(_ x: Float) -> Float { 1 / (1 + fastExp(-x)) }

public func reluForward(y: FPtr, x: CFPtr, n: Int) {
    for i in 0..<n { y[i] = x[i] > 0 ? x[i] : 0 }
}
public func reluBackward(dx: FPtr, dy: CFPtr, x: CFPtr, n: Int) {
    for i in 0..<n where x[i] > 0 { dx[i] += dy[i] }
}

/// Swish (SiLU): y = x·σ(x); y' = σ(x)·(1 + x·(1 − σ(x))). The loops are C (`swish.c`: AVX-512 where the CPU
/// has it, the same bits as `fastExp` in Swift), threaded in chunks of `elementChunk` values.
public func swishForward(y: FPtr, x: CFPtr, n: Int) {
    parallelChunks(n) { lo, cnt in w2v_swish_forward(y + lo, x + lo, cnt) }
}
public func swishBackward(dx: FPtr, dy: CFPtr, x: CFPtr, n: Int, write: GradientWrite = .accumulate) {
    parallelChunks(n) { lo, cnt in w2v_swish_backward(dx + lo, dy + lo, x + lo, cnt, write == .overwrite ? 1 : 0) }
}

/// Exact GELU: y = x·Φ(x) = ½x(1 + erf(x/√2)); y' = Φ(x) + x·φ(x).
public func geluForward(y: FPtr, x: CFPtr, n: Int) {
    parallelChunks(n) { lo, cnt in
        for i in lo..<(lo + cnt) { y[i] = 0.5 * x[i] * (1 + erff(x[i] * 0.70710678118654752)) }
    }
}
public func geluBackward(dx: FPtr, dy: CFPtr, x: CFPtr, n: Int) {
    parallelChunks(n) { lo, cnt in
        for i in lo..<(lo + cnt) {
            let v = x[i]
            let cdf = 0.5 * (1 + erff(v * 0.70710678118654752))
            let pdf = expf(-0.5 * v * v) * 0.39894228040143268
            dx[i] += dy[i] * (cdf + v * pdf)
        }
    }
}

/// GLU over the last dimension: x[N, 2C] → y[N, C] = a ⊙ σ(b), a = x[:, :C], b = x[:, C:].
public func gluForward(y: FPtr, x: CFPtr, n: Int, c: Int) {
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
        for i in lo..<hi {
            let a = x + i * 2 * c, b = a + c, yr = y + i * c
            sigmoidVector(yr, b, c)
            for j in 0..<c { yr[j] *= a[j] }
        }
    }
}
public func gluBackward(dx: FPtr, dy: CFPtr, x: CFPtr, n: Int, c: Int, write: GradientWrite = .accumulate) {
    let one = F8(repeating: 1)
    parallelFor(n, grain: max(1, 4096 / max(c, 1))) { lo, hi in
        for i in lo..<hi {
            let a = x + i * 2 * c, b = a + c, dyr = dy + i * c
            let da = dx + i * 2 * c, db = da + c
            var j = 0
            while j + 8 <= c {
                let s = one / (one + fastExp(-load8(b + j)))
                let g = load8(dyr + j)
                put8(g * s, da + j, write)
                put8(g * load8(a + j) * s * (one - s), db + j, write)
                j += 8
            }
            while j < c {
                let s = sigmoid(b[j])
                put1(dyr[j] * s, da + j, write)
                put1(dyr[j] * a[j] * s * (1 - s), db + j, write)
                j += 1
            }
        }
    }
}

public enum ActivationReference {
    public static func relu(_ x: [Double]) -> [Double] { x.map { max($0, 0) } }
    public static func swish(_ x: [Double]) -> [Double] { x.map { $0 / (1 + exp(-$0)) } }
    public static func gelu(_ x: [Double]) -> [Double] { x.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) } }
    public static func glu(_ x: [Double], n: Int, c: Int) -> [Double] {
        var y = [Double](repeating: 0, count: n * c)
        for i in 0..<n { for j in 0..<c { y[i * c + j] = x[i * 2 * c + j] / (1 + exp(-x[i * 2 * c + c + j])) } }
        return y
    }
}
