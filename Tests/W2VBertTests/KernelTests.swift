import XCTest
import Tensor

/// The fast grouped-Conv1d backward (Sources/Tensor/Conv1dGroupedFast.swift) against the clear one.
final class GroupedConvFastTests: XCTestCase {
    func testFastBackwardMatchesClear() {
        for (b, t, c, groups, p) in [(2, 37, 16, 4, 8), (1, 50, 12, 3, 7), (3, 5, 8, 2, 12), (2, 20, 32, 16, 128)] {
            var rng = RandomStream(seed: UInt64(t), purpose: .test)
            let x = FloatBuffer(count: b * t * c), dy = FloatBuffer(count: b * t * c), w = FloatBuffer(count: c * (c / groups) * p)
            rng.fillNormal(x.ptr, x.count); rng.fillNormal(dy.ptr, dy.count); rng.fillNormal(w.ptr, w.count)
            var results: [[Float]] = []
            for fast in [false, true] {
                let dx = FloatBuffer(count: b * t * c), dw = FloatBuffer(count: w.count), db = FloatBuffer(count: c)
                dx.ptr.update(repeating: 0.5, count: dx.count)   // accumulation is checked too
                if fast {
                    let work = FloatBuffer(count: groupedConv1dFastWorkspaceCount(t: t, c: c, groups: groups, p: p))
                    groupedConv1dBackwardFast(dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, work: work.ptr, dy: dy.ptr, x: x.ptr,
                                              weight: w.ptr, b: b, t: t, c: c, groups: groups, p: p)
                } else {
                    let cols = FloatBuffer(count: groupedConv1dColsCount(t: t, c: c, groups: groups, p: p))
                    groupedConv1dBackward(dx: dx.ptr, dWeight: dw.ptr, dBias: db.ptr, cols: cols.ptr, dy: dy.ptr, x: x.ptr,
                                          weight: w.ptr, b: b, t: t, c: c, groups: groups, p: p)
                }
                results.append(dx.array + dw.array + db.array)
            }
            let scale = results[0].map(abs).max()!
            let err = zip(results[0], results[1]).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(err / scale, 1e-5, "b \(b) t \(t) c \(c) groups \(groups) p \(p)")
        }
    }
}
