import XCTest
import Tensor
import TestSupport

/// The settings of these tests' products: fp32 on one thread (the references they are checked against).
private let compute = Compute.fp32()

final class ConvTests: XCTestCase {
    func testConv2d3x3Stride2() {
        var rng = TestRNG(20)
        // Budget 30 floats of cols: one or two output rows per chunk (several chunks per utterance).
        for (s, budget) in [
            (Conv2dShape(b: 2, cin: 1, cout: 3, h: 11, w: 9), conv2dColsBudget),
            (
                Conv2dShape(
                    b: 1,
                    cin: 3, cout: 2, h: 8, w: 10), conv2dColsBudget
            ),
            (Conv2dShape(b: 2, cin: 1, cout: 3, h: 11, w: 9), 30),
            (
                Conv2dShape(
                    b: 1, cin: 3, cout: 2,
                    h: 9, w: 10), 30
            )
        ] {
            let x = rng.uniform(s.b * s.cin * s.h * s.w), w = rng.uniform(s.cout * s.cin * 9), b = rng.uniform(s.cout)
            let ny = s.b * s.cout * s.ho * s.wo
            let ref: ([[Double]]) -> [Double] = {
                Conv2dReference.forward(
                    x: $0[0], weight: $0[1], bias: $0[2],
                    shape: s)
            }
            func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> [[Float]] {
                let X = FloatBuffer(f[0]), W = FloatBuffer(f[1]), B = FloatBuffer(f[2]), Y = FloatBuffer(count: ny)
                let cols = FloatBuffer(count: s.colsCount)
                conv2dForward(
                    compute, y: Y.ptr, cols: cols.ptr, x: X.ptr, weight: W.ptr, bias: B.ptr, shape: s,
                    colsBudget: budget)
                guard let dy else { return [Y.array] }
                let DY = FloatBuffer(dy)
                let dx = FloatBuffer(count: f[0].count)
                let dw = FloatBuffer(count: f[1].count)
                let db = FloatBuffer(count: s.cout)
                for _ in 0..<times {
                    conv2dBackward(
                        compute, dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, cols: cols.ptr, dy: DY.ptr,
                        x: X.ptr, weight: W.ptr, shape: s, colsBudget: budget)
                }
                return [dx.array, dw.array, db.array]
            }
            assertClose(
                run([x.floats, w.floats, b.floats], nil, 0)[0], ref([x, w, b]), rtol: 1e-5, atol: 1e-5,
                "conv2d forward")
            checkGradients(
                inputs: [x, w, b], outputCount: ny, reference: ref, analytic: { run($0, $1, $2) },
                "conv2d \(s) budget \(budget)")
        }
    }

    func testGroupedConv1dEvenAndOddKernels() {
        var rng = TestRNG(21)
        // (1, 300, …): more frames than one GEMM chunk (256).
        for (b, t, c, g, p) in [(2, 9, 8, 4, 4), (1, 7, 6, 2, 5), (2, 5, 4, 1, 6), (1, 3, 4, 4, 8), (1, 300, 4, 2, 4)] {
            let x = rng.uniform(b * t * c), w = rng.uniform(c * (c / g) * p), bias = rng.uniform(c)
            let ref: ([[Double]]) -> [Double] = {
                Conv1dReference.grouped(
                    x: $0[0], weight: $0[1], bias: $0[2], b: b,
                    t: t, c: c, groups: g, p: p)
            }
            func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> [[Float]] {
                let X = FloatBuffer(f[0])
                let W = FloatBuffer(f[1])
                let B = FloatBuffer(f[2])
                let Y = FloatBuffer(count: b * t * c)
                let work = FloatBuffer(count: groupedConv1dWorkspaceCount(t: t, c: c, groups: g, p: p, slots: 1))
                groupedConv1dForward(
                    compute, y: Y.ptr, work: work.ptr, slots: 1, x: X.ptr, weight: W.ptr, bias: B.ptr,
                    b: b, t: t, c: c, groups: g, p: p)
                guard let dy else { return [Y.array] }
                let DY = FloatBuffer(dy)
                let dx = FloatBuffer(count: f[0].count)
                let dw = FloatBuffer(count: f[1].count)
                let db = FloatBuffer(count: c)
                for _ in 0..<times {
                    groupedConv1dBackward(
                        compute, dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, work: work.ptr, slots: 1,
                        dy: DY.ptr, x: X.ptr, weight: W.ptr, b: b, t: t, c: c, groups: g, p: p)
                }
                return [dx.array, dw.array, db.array]
            }
            assertClose(
                run([x.floats, w.floats, bias.floats], nil, 0)[0], ref([x, w, bias]), rtol: 1e-5, atol: 1e-5,
                "grouped conv1d forward P=\(p)")
            checkGradients(
                inputs: [x, w, bias], outputCount: b * t * c, reference: ref, analytic: { run($0, $1, $2) },
                "grouped conv1d P=\(p) G=\(g)")
        }
    }

    func testDepthwiseConv1dSameAndCausal() {
        var rng = TestRNG(22)
        for (b, t, c, k, causal) in [
            (2, 9, 5, 3, false), (1, 7, 4, 4, false), (2, 6, 3, 5, true), (1, 3, 2, 7, false),
            (1, 4, 3, 1, true),
            (
                2, 70, 2, 5,
                false
            )
        ] {  // 70 frames: two frame blocks, a window across their border
            let x = rng.uniform(b * t * c), w = rng.uniform(c * k)
            let ref: ([[Double]]) -> [Double] = {
                Conv1dReference.depthwise(
                    x: $0[0], weight: $0[1], b: b, t: t, c: c,
                    k: k, causal: causal)
            }
            func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> [[Float]] {
                let X = FloatBuffer(f[0]), W = FloatBuffer(f[1]), Y = FloatBuffer(count: b * t * c)
                let wT = FloatBuffer(count: k * c)
                depthwiseConv1dForward(
                    y: Y.ptr, wT: wT.ptr, x: X.ptr, weight: W.ptr, b: b, t: t, c: c, k: k,
                    causal: causal)
                guard let dy else { return [Y.array] }
                let DY = FloatBuffer(dy), dx = FloatBuffer(count: f[0].count), dw = FloatBuffer(count: f[1].count)
                for _ in 0..<times {
                    depthwiseConv1dBackward(
                        dx: dx.ptr, dWeight: dw.ptr, wT: wT.ptr, dy: DY.ptr, x: X.ptr,
                        weight: W.ptr, b: b, t: t, c: c, k: k, causal: causal)
                }
                return [dx.array, dw.array]
            }
            assertClose(
                run([x.floats, w.floats], nil, 0)[0], ref([x, w]), rtol: 1e-5, atol: 1e-5,
                "depthwise forward k=\(k) causal=\(causal)")
            checkGradients(
                inputs: [x, w], outputCount: b * t * c, reference: ref, analytic: { run($0, $1, $2) },
                "depthwise k=\(k) causal=\(causal)")
        }
        // Causality: output frame t must not depend on input frames after t.
        let t = 8, c = 2, k = 4
        let x1 = FloatBuffer((0..<(t * c)).map { Float($0) })
        let x2 = FloatBuffer((0..<(t * c)).map { $0 >= 5 * c ? 100 : Float($0) })
        let w = FloatBuffer((0..<(c * k)).map { Float($0) + 1 }), wT = FloatBuffer(count: k * c)
        let y1 = FloatBuffer(count: t * c), y2 = FloatBuffer(count: t * c)
        depthwiseConv1dForward(y: y1.ptr, wT: wT.ptr, x: x1.ptr, weight: w.ptr, b: 1, t: t, c: c, k: k, causal: true)
        depthwiseConv1dForward(y: y2.ptr, wT: wT.ptr, x: x2.ptr, weight: w.ptr, b: 1, t: t, c: c, k: k, causal: true)
        XCTAssertEqual(Array(y1.array[0..<(5 * c)]), Array(y2.array[0..<(5 * c)]))
    }
}

final class AttentionTests: XCTestCase {
    func runAttention(
        _ s: AttentionShape, lengths: [Int32], _ f: [[Float]], _ dy: [Float]?,
        _ times: Int, compute: Compute = compute
    ) -> [[Float]] {
        let n = s.b * s.t * s.d
        let Q = FloatBuffer(f[0]), K = FloatBuffer(f[1]), V = FloatBuffer(f[2])
        let E = f.count > 3 ? FloatBuffer(f[3]) : nil
        let out = FloatBuffer(count: n)
        let saved = FloatBuffer(count: s.savedCount)
        let work = FloatBuffer(count: s.workspaceCount(threads: compute.threads))
        return lengths.withUnsafeBufferPointer { lp -> [[Float]] in
            attentionForward(
                compute, out: out.ptr, saved: saved.ptr, work: work.ptr, q: Q.ptr, k: K.ptr, v: V.ptr,
                relKey: E?.ptr, lengths: lp.baseAddress!, shape: s)
            guard let dy else { return [out.array] }
            let DY = FloatBuffer(dy), dq = FloatBuffer(count: n), dk = FloatBuffer(count: n), dv = FloatBuffer(count: n)
            let dE = E.map { FloatBuffer(count: $0.count) }
            for _ in 0..<times {
                attentionBackward(
                    compute, dq: dq.ptr, dk: dk.ptr, dv: dv.ptr, dRelKey: dE?.ptr, work: work.ptr,
                    dOut: DY.ptr, saved: saved.ptr,
                    q: Q.ptr, k: K.ptr, v: V.ptr, relKey: E?.ptr, lengths: lp.baseAddress!, shape: s)
            }
            return [dq.array, dk.array, dv.array] + (dE.map { [$0.array] } ?? [])
        }
    }

    func check(_ s: AttentionShape, lengths: [Int32], seed: UInt64) {
        var rng = TestRNG(seed)
        let n = s.b * s.t * s.d
        var inputs = [rng.uniform(n, -1.5, 1.5), rng.uniform(n, -1.5, 1.5), rng.uniform(n)]
        if s.relCount > 0 { inputs.append(rng.uniform(s.relCount * s.dh)) }
        let ref: ([[Double]]) -> [Double] = {
            AttentionReference.forward(
                q: $0[0], k: $0[1], v: $0[2], relKey: $0.count > 3 ? $0[3] : nil,
                lengths: lengths, shape: s)
        }
        assertClose(
            runAttention(s, lengths: lengths, inputs.map { $0.floats }, nil, 0)[0], ref(inputs), rtol: 1e-4,
            atol: 1e-5, "attention forward \(s.position)")
        checkGradients(
            inputs: inputs, outputCount: n, reference: ref,
            analytic: {
                self.runAttention(
                    s,
                    lengths: lengths, $0, $1, $2)
            },
            "attention \(s.position)")
        // Padded keys get no gradient (their probability is 0).
        let g = runAttention(s, lengths: lengths, inputs.map { $0.floats }, rng.uniform(n).floats, 1)
        for bi in 0..<s.b {
            for ti in Int(lengths[bi])..<s.t {
                for e in 0..<s.d {
                    XCTAssertEqual(g[1][(bi * s.t + ti) * s.d + e], 0, "dk at padded key")
                    XCTAssertEqual(g[2][(bi * s.t + ti) * s.d + e], 0, "dv at padded key")
                }
            }
        }
    }

    /// Every position mode, with the probabilities kept and recomputed, in one tile and in many (tiles of 2 or 3
    /// query rows, Shaw's relative logits 2 rows at a time).
    static func shapes(_ b: Int, _ t: Int, _ d: Int, _ heads: Int, _ position: AttentionPosition) -> [AttentionShape] {
        [
            AttentionShape(b: b, t: t, d: d, heads: heads, position: position, memory: .probabilities),
            AttentionShape(b: b, t: t, d: d, heads: heads, position: position, memory: .recompute),
            AttentionShape(b: b, t: t, d: d, heads: heads, position: position, tileScores: 3 * t, minTileRows: 2),
            AttentionShape(
                b: b, t: t, d: d, heads: heads, position: position, memory: .probabilities, tileScores: 1,
                minTileRows: 2),
        ]
    }

    func testNoPosition() {
        for s in Self.shapes(2, 7, 12, 3, .none) { check(s, lengths: [7, 4], seed: 30) }
    }
    func testShawRelativeKeys() {
        for s in Self.shapes(2, 9, 8, 2, .shaw(left: 3, right: 2)) { check(s, lengths: [9, 6], seed: 31) }
    }
    func testRoPE() {
        for s in Self.shapes(2, 6, 8, 2, .rope) { check(s, lengths: [5, 6], seed: 32) }
    }

    /// Tiled with recomputation against one tile with the probabilities kept, at a model's shape (T 600 in
    /// tiles of 64 rows, padded keys), fp32 and bf16: outputs and gradients within float round-off.
    func testTilesMatchKeptProbabilities() {
        var rng = TestRNG(33)
        let b = 2, t = 600, d = 64, heads = 4
        let lengths: [Int32] = [600, 411]
        for position in [AttentionPosition.none, .shaw(left: 64, right: 8), .rope] {
            let kept = AttentionShape(
                b: b, t: t, d: d, heads: heads, position: position, memory: .probabilities, tileScores: t * t)
            let tiled = AttentionShape(b: b, t: t, d: d, heads: heads, position: position, tileScores: 64 * t)
            XCTAssertEqual(kept.tileRows, t)
            XCTAssertEqual(tiled.tileRows, 64)
            let n = b * t * d
            var inputs = [rng.uniform(n, -1.5, 1.5), rng.uniform(n, -1.5, 1.5), rng.uniform(n)].map { $0.floats }
            if kept.relCount > 0 { inputs.append(rng.uniform(kept.relCount * kept.dh).floats) }
            let dy = rng.uniform(n).floats
            for precision in [Precision.fp32, .bf16] {
                let c = Compute(precision: precision, threads: compute.threads)
                let a = runAttention(kept, lengths: lengths, inputs, nil, 0, compute: c)
                    + runAttention(kept, lengths: lengths, inputs, dy, 1, compute: c)
                let z = runAttention(tiled, lengths: lengths, inputs, nil, 0, compute: c)
                    + runAttention(tiled, lengths: lengths, inputs, dy, 1, compute: c)
                for (i, (x, y)) in zip(a, z).enumerated() {
                    let scale = x.map { abs($0) }.max()!
                    let diff = zip(x, y).map { abs($0 - $1) }.max()!
                    // Outputs: same products per row; gradients dk, dv, dE: summed over tiles in another order.
                    XCTAssertLessThanOrEqual(diff, 2e-6 * scale, "\(position) \(precision) result \(i)")
                }
            }
        }
    }
}
