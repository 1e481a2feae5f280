import XCTest
import Tensor
import TestSupport

/// Hyper-lora with adapter.speaker = table: the table gather (s_b = table[row_b], rows outside
/// 0..<N take the unknown row N), the linear factor generator from [s; e] and per-utterance LoRA, composed as
/// in the model, against the Double reference; gradients of the table (a row shared by two utterances, an
/// unused row, the unknown row reached by −1 and by an index ≥ N), e, gen_a, gen_b and x by finite
/// differences in Double (backward twice = 2× once).
final class SpeakerTableKernelTests: XCTestCase {
    func testTableChain() {
        var rng = TestRNG(31)
        // (batch, T, N known speakers, S, E, in, out, r, rows)
        for (batch, t, n, S, E, i, o, r, rows) in [
            (4, 3, 3, 2, 2, 5, 3, 2, [Int32(1), -1, 1, 7]),
            (1, 2, 1, 3, 1, 2, 4, 1, [Int32(0)]),
            (3, 4, 2, 2, 3, 3, 3, 3, [Int32(-1), 0, -1])
        ] {
            let H = S + E, sc = 1.25
            let table = rng.uniform((n + 1) * S), e = rng.uniform(E)
            let ga = rng.uniform(H * r * i), gb = rng.uniform(H * o * r), x = rng.uniform(batch * t * i)
            let ref: ([[Double]]) -> [Double] = {
                HyperLoRAReference.forwardTable(
                    table: $0[0], rows: rows, e: $0[1], genA: $0[2], genB: $0[3], x: $0[4], scale: sc,
                    t: t, dim: S, inDim: i, outDim: o, rank: r)
            }
            func run(_ f: [[Float]], _ dy: [Float]?, _ times: Int) -> ([Float], [[Float]]) {
                let Tb = FloatBuffer(f[0]), s = FloatBuffer(count: batch * S)
                let chain = FactorChain(
                    e: f[1], genA: f[2], genB: f[3], x: f[4], batch: batch, t: t, S: S, inDim: i, outDim: o, rank: r,
                    scale: sc)
                return rows.withUnsafeBufferPointer { rp in
                    speakerTableForward(s: s.ptr, table: Tb.ptr, rows: rp.baseAddress, unknown: n, batch: batch, dim: S)
                    let y = chain.forward(s.ptr)
                    guard let dy else { return (y, []) }
                    let DY = FloatBuffer(dy), dt = FloatBuffer(count: Tb.count)
                    for _ in 0..<times {
                        speakerTableBackward(
                            dTable: dt.ptr, ds: chain.backward(DY), rows: rp.baseAddress, unknown: n, batch: batch,
                            dim: S)
                    }
                    withExtendedLifetime((Tb, s, DY)) {}
                    return (y, [dt.array, chain.de.array, chain.dga.array, chain.dgb.array, chain.dx.array])
                }
            }
            let inputs = [table, e, ga, gb, x]
            assertClose(
                run(inputs.map(\.floats), nil, 0).0, ref(inputs.map { $0.floats.doubles }), rtol: 1e-5, atol: 1e-5,
                "table forward")
            checkGradients(
                inputs: inputs, outputCount: batch * t * o, reference: ref, analytic: { run($0, $1, $2).1 },
                "speaker table chain B\(batch) N\(n) S\(S) E\(E) \(i)->\(o) r\(r) rows \(rows)")
            // Rows no utterance uses get exactly zero gradient (the gather's backward touches only used rows).
            let g = run(inputs.map(\.floats), rng.uniform(batch * t * o).floats, 1).1[0]
            let used = Set(rows.map { speakerTableRow($0, unknown: n) })
            for row in 0...n where !used.contains(row) {
                XCTAssert(g[(row * S)..<((row + 1) * S)].allSatisfy { $0 == 0 }, "unused row \(row) got a gradient")
            }
            // nil rows: every utterance takes the unknown row.
            let s1 = FloatBuffer(count: batch * S), Tb = FloatBuffer(table.floats)
            speakerTableForward(s: s1.ptr, table: Tb.ptr, rows: nil, unknown: n, batch: batch, dim: S)
            for b in 0..<batch {
                XCTAssertEqual(Array(s1.array[(b * S)..<((b + 1) * S)]), Array(table.floats[(n * S)...]))
            }
        }
    }
}
