import XCTest
import Tensor
import TestSupport

/// The settings of these tests' products: fp32 on one thread (the references they are checked against).
private let compute = Compute.fp32()

// Forward vs naive Double reference, backward vs central finite differences of the Double reference,
// backward twice == 2× once, for Linear, LayerNorm, activations, softmax, cross-entropy, dropout, cosine,
// Gumbel-softmax.

final class LinearTests: XCTestCase {
    func testLinear() {
        var rng = TestRNG(10)
        for (n, i, o, hasBias) in [
            (5, 7, 3, true), (1, 1, 1, true), (9, 16, 13, false),
            (
                150, 2, 3,
                true
            )
        ] {  // 150 rows: 3 blocks of the bias sums
            let x = rng.uniform(n * i), w = rng.uniform(o * i), b = rng.uniform(o)
            func fwd(_ f: [[Float]]) -> FloatBuffer {
                let y = FloatBuffer(count: n * o)
                let X = FloatBuffer(f[0]), W = FloatBuffer(f[1]), B = FloatBuffer(f[2])
                linearForward(
                    compute, y: y.ptr, x: X.ptr, weight: W.ptr, bias: hasBias ? B.ptr : nil, n: n, inDim: i,
                    outDim: o)
                return y
            }
            let ref: ([[Double]]) -> [Double] = {
                LinearReference.forward(
                    x: $0[0], weight: $0[1],
                    bias: hasBias ? $0[2] : nil, n: n, inDim: i, outDim: o)
            }
            assertClose(
                fwd([x.floats, w.floats, b.floats]).array, ref([x, w, b]), rtol: 1e-5, atol: 1e-5,
                "linear forward")
            checkGradients(
                inputs: [x, w, b], checked: hasBias ? [0, 1, 2] : [0, 1], outputCount: n * o, reference: ref,
                analytic: { f, dy, times in
                    let X = FloatBuffer(f[0]), W = FloatBuffer(f[1]), DY = FloatBuffer(dy)
                    let dx = FloatBuffer(count: n * i), dw = FloatBuffer(count: o * i), db = FloatBuffer(count: o)
                    for _ in 0..<times {
                        linearBackward(
                            compute, dx: dx.ptr, dWeight: dw.ptr, dBias: hasBias ? db.ptr : nil, dy: DY.ptr,
                            x: X.ptr, weight: W.ptr, n: n, inDim: i, outDim: o)
                    }
                    return hasBias ? [dx.array, dw.array, db.array] : [dx.array, dw.array]
                }, "linear \(n)x\(i)->\(o)")
        }
    }
}

final class LayerNormTests: XCTestCase {
    func testLayerNorm() {
        var rng = TestRNG(11)
        for (n, c) in [(4, 9), (3, 64), (1, 2), (150, 3)] {  // 150 rows: 3 blocks of the dγ, dβ sums
            let x = rng.uniform(n * c, -2, 3), w = rng.uniform(c, 0.5, 1.5), b = rng.uniform(c)
            let ref: ([[Double]]) -> [Double] = {
                LayerNormReference.forward(
                    x: $0[0], weight: $0[1], bias: $0[2], n: n,
                    c: c)
            }
            let y = FloatBuffer(count: n * c), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
            let X = FloatBuffer(x.floats), W = FloatBuffer(w.floats), B = FloatBuffer(b.floats)
            layerNormForward(y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, n: n, c: c)
            assertClose(y.array, ref([x, w, b]), rtol: 1e-4, atol: 1e-5, "layernorm forward")
            checkGradients(
                inputs: [x, w, b], outputCount: n * c, reference: ref,
                analytic: { f, dy, times in
                    let X = FloatBuffer(f[0]), W = FloatBuffer(f[1]), B = FloatBuffer(f[2]), DY = FloatBuffer(dy)
                    let y = FloatBuffer(count: n * c), mean = FloatBuffer(count: n), rstd = FloatBuffer(count: n)
                    layerNormForward(
                        y: y.ptr, mean: mean.ptr, rstd: rstd.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, n: n,
                        c: c)
                    let dx = FloatBuffer(count: n * c), dw = FloatBuffer(count: c), db = FloatBuffer(count: c)
                    for _ in 0..<times {
                        layerNormBackward(
                            dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, dy: DY.ptr, x: X.ptr, weight: W.ptr,
                            mean: mean.ptr, rstd: rstd.ptr, n: n, c: c)
                    }
                    return [dx.array, dw.array, db.array]
                }, "layernorm \(n)x\(c)")
        }
    }
}

final class ActivationTests: XCTestCase {
    typealias Fwd = (FPtr, CFPtr, Int) -> Void
    typealias Bwd = (FPtr, CFPtr, CFPtr, Int) -> Void

    func check(
        _ name: String, _ fwd: Fwd, _ bwd: Bwd, _ ref: @escaping ([Double]) -> [Double],
        avoidKink: Bool = false
    ) {
        var rng = TestRNG(12)
        let n = 301
        // Kinks excluded: ReLU's inputs stay at least 0.01 away from 0 (eps is 1e-5).
        let x = rng.uniform(n, -4, 4).map { avoidKink && abs($0) < 0.01 ? $0 + 0.05 : $0 }
        let X = FloatBuffer(x.floats), Y = FloatBuffer(count: n)
        fwd(Y.ptr, X.ptr, n)
        assertClose(Y.array, ref(x), rtol: 1e-5, atol: 1e-6, "\(name) forward")
        checkGradients(
            inputs: [x], outputCount: n, reference: { ref($0[0]) },
            analytic: { f, dy, times in
                let X = FloatBuffer(f[0]), DY = FloatBuffer(dy), dx = FloatBuffer(count: n)
                for _ in 0..<times { bwd(dx.ptr, DY.ptr, X.ptr, n) }
                return [dx.array]
            }, name)
    }

    func testReLU() {
        check(
            "relu", { reluForward(y: $0, x: $1, n: $2) },
            {
                reluBackward(
                    dx: $0, dy: $1, x: $2,
                    n: $3)
            }, ActivationReference.relu, avoidKink: true)
    }
    func testSwish() {
        check(
            "swish", { swishForward(y: $0, x: $1, n: $2) },
            {
                swishBackward(
                    dx: $0, dy: $1, x: $2,
                    n: $3)
            }, ActivationReference.swish)
    }
    func testGELU() {
        check(
            "gelu", { geluForward(y: $0, x: $1, n: $2) },
            {
                geluBackward(
                    dx: $0, dy: $1, x: $2,
                    n: $3)
            }, ActivationReference.gelu)
    }

    func testGLU() {
        var rng = TestRNG(13)
        let n = 5, c = 7
        let x = rng.uniform(n * 2 * c, -3, 3)
        let X = FloatBuffer(x.floats), Y = FloatBuffer(count: n * c)
        gluForward(y: Y.ptr, x: X.ptr, n: n, c: c)
        assertClose(Y.array, ActivationReference.glu(x, n: n, c: c), rtol: 1e-5, atol: 1e-6, "glu forward")
        checkGradients(
            inputs: [x], outputCount: n * c, reference: { ActivationReference.glu($0[0], n: n, c: c) },
            analytic: { f, dy, times in
                let X = FloatBuffer(f[0]), DY = FloatBuffer(dy), dx = FloatBuffer(count: n * 2 * c)
                for _ in 0..<times { gluBackward(dx: dx.ptr, dy: DY.ptr, x: X.ptr, n: n, c: c) }
                return [dx.array]
            }, "glu")
    }
}

final class SoftmaxTests: XCTestCase {
    func testSoftmax() {
        var rng = TestRNG(14)
        let n = 4, v = 11
        var x = rng.uniform(n * v, -3, 3)
        x[3] = -.infinity  // a masked entry
        let X = FloatBuffer(x.floats), Y = FloatBuffer(count: n * v)
        softmaxForward(y: Y.ptr, x: X.ptr, n: n, v: v)
        assertClose(Y.array, SoftmaxReference.softmax(x, n: n, v: v), rtol: 1e-5, atol: 1e-7, "softmax forward")
        let finite = x.map { $0.isFinite ? $0 : -30 }
        checkGradients(
            inputs: [finite], outputCount: n * v, reference: { SoftmaxReference.softmax($0[0], n: n, v: v) },
            analytic: { f, dy, times in
                let X = FloatBuffer(f[0])
                let Y = FloatBuffer(count: n * v)
                let DY = FloatBuffer(dy)
                let dx = FloatBuffer(count: n * v)
                softmaxForward(y: Y.ptr, x: X.ptr, n: n, v: v)
                for _ in 0..<times { softmaxBackward(dx: dx.ptr, dy: DY.ptr, y: Y.ptr, n: n, v: v) }
                return [dx.array]
            }, "softmax")
        // All-masked row: zeros, no NaN.
        let M = FloatBuffer([Float](repeating: -.infinity, count: 3)), O = FloatBuffer(count: 3)
        softmaxForward(y: O.ptr, x: M.ptr, n: 1, v: 3)
        XCTAssertEqual(O.array, [0, 0, 0])
    }

    func testCrossEntropyWithIgnoredRows() {
        var rng = TestRNG(15)
        let n = 6, v = 9
        let x = rng.uniform(n * v, -4, 4)
        let targets: [Int32] = [0, 8, -1, 3, -1, 5]
        let ref: ([[Double]]) -> [Double] = { SoftmaxReference.crossEntropy($0[0], targets: targets, n: n, v: v) }
        let X = FloatBuffer(x.floats), L = FloatBuffer(count: n), P = FloatBuffer(count: n * v)
        let total = targets.withUnsafeBufferPointer {
            crossEntropyForward(
                losses: L.ptr, probs: P.ptr, logits: X.ptr,
                targets: $0.baseAddress!, n: n, v: v)
        }
        assertClose(L.array, ref([x]), rtol: 1e-5, atol: 1e-6, "cross-entropy forward")
        XCTAssertEqual(Double(total), ref([x]).reduce(0, +), accuracy: 1e-4)
        checkGradients(
            inputs: [x], outputCount: n, reference: ref,
            analytic: { f, dy, times in
                let X = FloatBuffer(f[0]), L = FloatBuffer(count: n), P = FloatBuffer(count: n * v),
                    DY = FloatBuffer(dy)
                let dx = FloatBuffer(count: n * v)
                targets.withUnsafeBufferPointer { t in
                    crossEntropyForward(losses: L.ptr, probs: P.ptr, logits: X.ptr, targets: t.baseAddress!, n: n, v: v)
                    for _ in 0..<times {
                        crossEntropyBackward(
                            dLogits: dx.ptr, dLosses: DY.ptr, probs: P.ptr,
                            targets: t.baseAddress!, n: n, v: v)
                    }
                }
                // Ignored rows get exactly zero gradient.
                for j in 0..<v {
                    XCTAssertEqual(dx[2 * v + j], 0)
                    XCTAssertEqual(dx[4 * v + j], 0)
                }
                return [dx.array]
            }, "cross-entropy")
    }
}

final class DropoutCosineGumbelTests: XCTestCase {
    func testDropoutStoredMask() {
        let n = 10_000, p: Float = 0.3
        var s1 = RandomStream(seed: 5, step: 1, microBatch: 2, purpose: .dropout)
        var s2 = RandomStream(seed: 5, step: 1, microBatch: 2, purpose: .dropout)
        let m1 = FloatBuffer(count: n), m2 = FloatBuffer(count: n)
        dropoutMask(m1.ptr, n: n, p: p, stream: &s1)
        dropoutMask(m2.ptr, n: n, p: p, stream: &s2)
        XCTAssertEqual(m1.array, m2.array, "same key, same mask")
        let dropped = m1.array.filter { $0 == 0 }.count
        XCTAssertEqual(Double(dropped) / Double(n), 0.3, accuracy: 0.02)
        XCTAssert(m1.array.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-6 })
        var rng = TestRNG(16)
        let x = rng.uniform(n)
        let mask = m1.array.doubles
        let ref: ([[Double]]) -> [Double] = { zip($0[0], mask).map { $0 * $1 } }
        let X = FloatBuffer(x.floats), Y = FloatBuffer(count: n)
        dropoutForward(y: Y.ptr, x: X.ptr, mask: m1.ptr, n: n)
        assertClose(Y.array, ref([x]), rtol: 1e-6, atol: 1e-7, "dropout forward")
        checkGradients(
            inputs: [x], outputCount: n, reference: ref,
            analytic: { f, dy, times in
                let DY = FloatBuffer(dy), dx = FloatBuffer(count: n)
                for _ in 0..<times { dropoutBackward(dx: dx.ptr, dy: DY.ptr, mask: m1.ptr, n: n) }
                return [dx.array]
            }, maxPerTensor: 100, "dropout")
    }

    func testCosineSimilarityPairs() {
        var rng = TestRNG(17)
        let na = 4, nb = 6, dim = 5
        let a = rng.uniform(na * dim)
        var b = rng.uniform(nb * dim)
        let ia: [Int32] = [0, 0, 1, 2, 3, 3, 1, 0]
        let ib: [Int32] = [0, 1, 2, 3, 4, 0, 1, 5]
        let n = ia.count
        let ref: ([[Double]]) -> [Double] = { CosineReference.forward(a: $0[0], b: $0[1], ia: ia, ib: ib, dim: dim) }
        func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> ([Float], [Float], [Float]) {
            let A = FloatBuffer(f[0]), B = FloatBuffer(f[1]), O = FloatBuffer(count: n)
            let nA = FloatBuffer(count: na), nB = FloatBuffer(count: nb)
            let da = FloatBuffer(count: na * dim), db = FloatBuffer(count: nb * dim)
            ia.withUnsafeBufferPointer { ip in
                ib.withUnsafeBufferPointer { jp in
                    cosineForward(
                        out: O.ptr, normA: nA.ptr, normB: nB.ptr, a: A.ptr, b: B.ptr, ia: ip.baseAddress!,
                        ib: jp.baseAddress!, n: n, na: na, nb: nb, dim: dim)
                    if let dy {
                        let DY = FloatBuffer(dy)
                        for _ in 0..<times {
                            cosineBackward(
                                da: da.ptr, db: db.ptr, dOut: DY.ptr, out: O.ptr, normA: nA.ptr, normB: nB.ptr,
                                a: A.ptr, b: B.ptr, ia: ip.baseAddress!, ib: jp.baseAddress!, n: n, dim: dim)
                        }
                    }
                }
            }
            return (O.array, da.array, db.array)
        }
        assertClose(run([a.floats, b.floats], nil, 0).0, ref([a, b]), rtol: 1e-5, atol: 1e-6, "cosine forward")
        // The norm is not differentiable at 0 (a kink, excluded from finite differences): a zero vector's
        // norm is clamped at eps, its cosine is 0 and every gradient stays finite.
        var bz = b
        for e in 0..<dim { bz[5 * dim + e] = 0 }
        let z = run([a.floats, bz.floats], [Float](repeating: 1, count: n), 1)
        XCTAssertEqual(z.0[7], 0)
        XCTAssert((z.1 + z.2).allSatisfy { $0.isFinite })
        b[0] += 0
        checkGradients(
            inputs: [a, b], outputCount: n, reference: ref,
            analytic: { f, dy, times in
                let r = run(f, dy, times)
                return [r.1, r.2]
            }, eps: 1e-6, "cosine")
    }

    func testGumbelStraightThrough() {
        var rng = TestRNG(18)
        let n = 5, v = 8
        let tau = 0.7
        let logits = rng.uniform(n * v, -2, 2)
        var stream = RandomStream(seed: 3, step: 4, microBatch: 5, purpose: .gumbel)
        let noiseF = FloatBuffer(count: n * v)
        stream.fillGumbel(noiseF.ptr, n * v)
        let noise = noiseF.array.doubles
        let L = FloatBuffer(logits.floats), Y = FloatBuffer(count: n * v), S = FloatBuffer(count: n * v)
        var ids = [Int32](repeating: -1, count: n)
        ids.withUnsafeMutableBufferPointer {
            gumbelSoftmaxForward(
                y: Y.ptr, ids: $0.baseAddress!, soft: S.ptr, logits: L.ptr, noise: noiseF.ptr,
                tau: Float(tau), n: n, v: v)
        }
        // Forward: exactly one-hot at argmax(l + γ).
        XCTAssertEqual(ids, GumbelReference.ids(logits: logits, noise: noise, n: n, v: v))
        for i in 0..<n { for j in 0..<v { XCTAssertEqual(Y[i * v + j], j == Int(ids[i]) ? 1 : 0) } }
        assertClose(
            S.array, GumbelReference.soft(logits: logits, noise: noise, tau: tau, n: n, v: v), rtol: 1e-5,
            atol: 1e-6, "gumbel soft")
        // Backward: the gradient of the tempered soft sample with the same noise.
        checkGradients(
            inputs: [logits], outputCount: n * v,
            reference: {
                GumbelReference.soft(
                    logits: $0[0],
                    noise: noise, tau: tau, n: n, v: v)
            },
            analytic: { f, dy, times in
                let L = FloatBuffer(f[0])
                let Y = FloatBuffer(count: n * v)
                let S = FloatBuffer(count: n * v)
                let DY = FloatBuffer(dy)
                let dl = FloatBuffer(count: n * v)
                var ids = [Int32](repeating: 0, count: n)
                ids.withUnsafeMutableBufferPointer {
                    gumbelSoftmaxForward(
                        y: Y.ptr, ids: $0.baseAddress!, soft: S.ptr, logits: L.ptr, noise: noiseF.ptr,
                        tau: Float(tau), n: n, v: v)
                }
                for _ in 0..<times {
                    gumbelSoftmaxBackward(
                        dLogits: dl.ptr, dy: DY.ptr, soft: S.ptr, tau: Float(tau), n: n,
                        v: v)
                }
                return [dl.array]
            }, "gumbel straight-through")
    }
}

/// The LoRA branch of an adapted Linear, y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ (Linear kernel + LoRA kernel)
/// against the Double reference; gradients of x, W, b, A and B by finite differences; a frozen base
/// (dWeight, dBias nil) leaves dx and the adapter gradients unchanged.
final class LoRATests: XCTestCase {
    func testLoRA() {
        var rng = TestRNG(13)
        for (n, i, o, r, s) in [(5, 7, 3, 2, 2.5), (1, 1, 1, 1, 1.0), (9, 16, 13, 4, 0.75)] {
            let x = rng.uniform(n * i)
            let w = rng.uniform(o * i)
            let b = rng.uniform(o)
            let a = rng.uniform(r * i)
            let bb = rng.uniform(o * r)
            let ref: ([[Double]]) -> [Double] = {
                LoRAReference.forward(
                    x: $0[0], weight: $0[1], bias: $0[2], a: $0[3], b: $0[4], scale: s, n: n,
                    inDim: i, outDim: o, rank: r)
            }
            let y = FloatBuffer(count: n * o), u = FloatBuffer(count: n * r)
            let X = FloatBuffer(x.floats)
            let W = FloatBuffer(w.floats)
            let B = FloatBuffer(b.floats)
            let A = FloatBuffer(a.floats)
            let BB = FloatBuffer(bb.floats)
            withExtendedLifetime((X, W, B, A, BB, u)) {  // Swift may release a buffer right after its last use
                linearForward(compute, y: y.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, n: n, inDim: i, outDim: o)
                loraForward(
                    compute, y: y.ptr, u: u.ptr, x: X.ptr, a: A.ptr, b: BB.ptr, scale: Float(s), n: n, inDim: i,
                    outDim: o, rank: r)
            }
            assertClose(y.array, ref([x, w, b, a, bb]), rtol: 1e-5, atol: 1e-5, "lora forward")
            func backward(_ f: [[Float]], _ dy: [Float], _ times: Int, frozen: Bool) -> [[Float]] {
                let X = FloatBuffer(f[0])
                let W = FloatBuffer(f[1])
                let A = FloatBuffer(f[3])
                let BB = FloatBuffer(f[4])
                let DY = FloatBuffer(dy)
                let y = FloatBuffer(count: n * o), u = FloatBuffer(count: n * r), du = FloatBuffer(count: n * r)
                loraForward(
                    compute, y: y.ptr, u: u.ptr, x: X.ptr, a: A.ptr, b: BB.ptr, scale: Float(s), n: n, inDim: i,
                    outDim: o, rank: r)
                let dx = FloatBuffer(count: n * i), dw = FloatBuffer(count: o * i), db = FloatBuffer(count: o)
                let da = FloatBuffer(count: r * i), dbb = FloatBuffer(count: o * r)
                for _ in 0..<times {
                    loraBackward(
                        compute, dx: dx.ptr, dA: da.ptr, dB: dbb.ptr, du: du.ptr, dy: DY.ptr, x: X.ptr,
                        u: u.ptr, a: A.ptr, b: BB.ptr, scale: Float(s), n: n, inDim: i, outDim: o, rank: r)
                    linearBackward(
                        compute, dx: dx.ptr, dWeight: frozen ? nil : dw.ptr, dBias: frozen ? nil : db.ptr,
                        dy: DY.ptr, x: X.ptr, weight: W.ptr, n: n, inDim: i, outDim: o)
                }
                withExtendedLifetime((X, W, A, BB, DY, u, du)) {}
                return frozen ? [dx.array, da.array, dbb.array] : [dx.array, dw.array, db.array, da.array, dbb.array]
            }
            checkGradients(
                inputs: [x, w, b, a, bb], outputCount: n * o, reference: ref,
                analytic: { backward($0, $1, $2, frozen: false) }, "lora \(n)x\(i)->\(o) r\(r)")
            checkGradients(
                inputs: [x, w, b, a, bb], checked: [0, 3, 4], outputCount: n * o, reference: ref,
                analytic: { backward($0, $1, $2, frozen: true) }, "lora frozen base \(n)x\(i)->\(o) r\(r)")
        }
    }
}

/// A hypernetwork-generated weight W = base + Σ_k e[k]·coef[k] + B·A against the Double
/// reference; gradients of base, coef, e, A, B by finite differences (with and without the residual).
final class HyperWeightTests: XCTestCase {
    func testHyperWeight() {
        var rng = TestRNG(14)
        for (o, i, E, r) in [(3, 5, 2, 2), (1, 1, 1, 0), (7, 4, 3, 1)] {
            let base = rng.uniform(o * i)
            let coef = rng.uniform(E * o * i)
            let e = rng.uniform(E)
            let a = rng.uniform(max(r, 1) * i)
            let b = rng.uniform(o * max(r, 1))
            let ref: ([[Double]]) -> [Double] = {
                HyperReference.weight(
                    base: $0[0], coef: $0[1], e: $0[2], dim: E, a: r > 0 ? $0[3] : nil,
                    b: r > 0 ? $0[4] : nil, rank: r, outDim: o, inDim: i)
            }
            let F = [base, coef, e, a, b].map { FloatBuffer($0.floats) }
            let w = FloatBuffer(count: o * i)
            // (the buffers must outlive the call: Swift may release an object right after its last use)
            withExtendedLifetime(F) {
                hyperWeightForward(
                    compute, w: w.ptr, base: F[0].ptr, coef: F[1].ptr, e: F[2].ptr, dim: E,
                    a: r > 0 ? F[3].ptr : nil, b: r > 0 ? F[4].ptr : nil, rank: r, outDim: o, inDim: i)
            }
            assertClose(w.array, ref([base, coef, e, a, b]), rtol: 1e-5, atol: 1e-5, "hyper weight forward")
            checkGradients(
                inputs: [base, coef, e, a, b], checked: r > 0 ? [0, 1, 2, 3, 4] : [0, 1, 2],
                outputCount: o * i, reference: ref,
                analytic: { f, dy, times in
                    let P = f.map { FloatBuffer($0) }, DW = FloatBuffer(dy)
                    let G = f.map { FloatBuffer(count: $0.count) }
                    for _ in 0..<times {
                        withExtendedLifetime((P, G, DW)) {
                            hyperWeightBackward(
                                compute, dW: DW.ptr, dBase: G[0].ptr, dCoef: G[1].ptr, dE: G[2].ptr,
                                coef: P[1].ptr, e: P[2].ptr, dim: E,
                                dA: r > 0 ? G[3].ptr : nil, dB: r > 0 ? G[4].ptr : nil, a: r > 0 ? P[3].ptr : nil,
                                b: r > 0 ? P[4].ptr : nil,
                                rank: r, outDim: o, inDim: i)
                        }
                    }
                    return (r > 0 ? [0, 1, 2, 3, 4] : [0, 1, 2]).map { G[$0].array }
                }, "hyper weight \(o)x\(i) E\(E) r\(r)")
        }
    }
}

/// Hyper-lora: speaker encoder (mean over valid frames → Linear → tanh), linear factor generator
/// from [s; e] and per-utterance LoRA, composed as in the model, against the Double reference; gradients of
/// z, the encoder's weight and bias, e, gen_a, gen_b and x by finite differences (backward twice = 2× once).
final class HyperLoRAKernelTests: XCTestCase {
    func testChain() {
        var rng = TestRNG(21)
        for (batch, t, d, S, E, i, o, r, lens) in [
            (3, 4, 5, 2, 2, 6, 3, 2, [4, 2, 3]), (1, 3, 3, 1, 1, 2, 2, 1, [3]),
            (2, 5, 4, 3, 2, 4, 5, 3, [1, 5])
        ] {
            let H = S + E, sc = 1.5
            let z = rng.uniform(batch * t * d), w = rng.uniform(S * d), bias = rng.uniform(S), e = rng.uniform(E)
            let ga = rng.uniform(H * r * i), gb = rng.uniform(H * o * r), x = rng.uniform(batch * t * i)
            let ref: ([[Double]]) -> [Double] = {
                HyperLoRAReference.forward(
                    z: $0[0], lengths: lens, weight: $0[1], bias: $0[2], e: $0[3], genA: $0[4],
                    genB: $0[5],
                    x: $0[6], scale: sc, batch: batch, t: t, d: d, dim: S, inDim: i, outDim: o, rank: r)
            }
            let L = FloatBuffer(count: batch)  // lengths as Int32 (FloatBuffer memory reinterpreted)
            let lp = UnsafeMutableRawPointer(L.ptr).assumingMemoryBound(to: Int32.self)
            for b in 0..<batch { lp[b] = Int32(lens[b]) }
            func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> ([Float], [[Float]]) {
                let Z = FloatBuffer(f[0]), W = FloatBuffer(f[1]), Bi = FloatBuffer(f[2])
                let s = FloatBuffer(count: batch * S), pooled = FloatBuffer(count: batch * d)
                speakerEncoderForward(
                    compute, s: s.ptr, pooled: pooled.ptr, z: Z.ptr, lengths: lp, weight: W.ptr,
                    bias: Bi.ptr, batch: batch, t: t, d: d, dim: S)
                let chain = FactorChain(
                    e: f[3], genA: f[4], genB: f[5], x: f[6], batch: batch, t: t, S: S, inDim: i,
                    outDim: o, rank: r, scale: sc)
                let y = chain.forward(s.ptr)
                guard let dy else { return (y, []) }
                let DY = FloatBuffer(dy)
                let dz = FloatBuffer(count: Z.count), dw = FloatBuffer(count: W.count), db = FloatBuffer(count: S)
                for _ in 0..<times {
                    speakerEncoderBackward(
                        compute, dz: dz.ptr, dWeight: dw.ptr, dBias: db.ptr, ds: chain.backward(DY),
                        s: s.ptr, pooled: pooled.ptr,
                        weight: W.ptr, lengths: lp, batch: batch, t: t, d: d, dim: S)
                }
                withExtendedLifetime((Z, W, Bi, s, pooled, DY)) {}
                return (
                    y,
                    [
                        dz.array, dw.array, db.array, chain.de.array, chain.dga.array, chain.dgb.array,
                        chain.dx.array
                    ]
                )
            }
            assertClose(
                run([z, w, bias, e, ga, gb, x].map(\.floats), nil, 0).0,
                ref(
                    [
                        z, w, bias, e, ga, gb,
                        x
                    ].map { $0.floats.doubles }),
                rtol: 1e-5, atol: 1e-5, "hyper-lora forward")
            checkGradients(
                inputs: [z, w, bias, e, ga, gb, x], outputCount: batch * t * o, reference: ref,
                analytic: {
                    run(
                        $0, $1,
                        $2
                    ).1
                }, "hyper-lora chain B\(batch) T\(t) d\(d) S\(S) E\(E) \(i)->\(o) r\(r)")
            withExtendedLifetime(L) {}
        }
    }
}
