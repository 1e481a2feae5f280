import Audio
import Tensor
import XCTest

final class MaskingTests: XCTestCase {
    func testFractionSpansAndBounds() {
        let masker = SpanMasker(maskProb: 0.65, span: 10, minSpans: 2)
        var masked = 0, total = 0
        for mb in 0..<50 {
            let lengths = (0..<8).map { 400 + ($0 * 37 + mb * 11) % 300 }  // long utterances, 400–699 frames
            let T = lengths.max()! + 13
            var rng = RandomStream(seed: 3, step: 5, microBatch: mb, purpose: .mask)
            let m = masker.mask(lengths: lengths, paddedLength: T, stream: &rng)
            XCTAssertEqual(m.count, 8 * T)
            for (b, L) in lengths.enumerated() {
                let row = m[(b * T)..<(b * T + T)]
                XCTAssertFalse(row[(b * T + L)...].contains(1), "masked padding")
                masked += row.prefix(L).filter { $0 == 1 }.count
                total += L
            }
        }
        let fraction = Double(masked) / Double(total)
        print("mask fraction over long utterances: \(fraction)")
        XCTAssertTrue(fraction > 0.45 && fraction < 0.53, "fraction \(fraction)")
    }

    /// At least min_spans distinct starts, all in [0, L − span], the count capped at L − span + 1, and the
    /// mask is exactly the union of the drawn spans.
    func testMinSpansAndCap() {
        let masker = SpanMasker(maskProb: 0.65, span: 10, minSpans: 2)
        for L in 10..<60 {
            for mb in 0..<20 {
                var rng = RandomStream(seed: 1, step: L, microBatch: mb, purpose: .mask)
                var replay = rng
                let starts = masker.drawStarts(length: L, stream: &replay)
                XCTAssertEqual(Set(starts).count, starts.count, "without replacement")
                XCTAssertGreaterThanOrEqual(starts.count, min(2, L - 10 + 1))
                XCTAssertLessThanOrEqual(starts.count, L - 10 + 1)
                XCTAssertTrue(starts.allSatisfy { $0 >= 0 && $0 + 10 <= L })
                let m = masker.mask(lengths: [L], paddedLength: 64, stream: &rng)
                var expected = [UInt8](repeating: 0, count: 64)
                for s in starts { for t in s..<(s + 10) { expected[t] = 1 } }
                XCTAssertEqual(m, expected)
            }
        }
        // L == span: one possible start, span count capped at 1: exactly the whole utterance
        var rng = RandomStream(seed: 1, purpose: .mask)
        XCTAssertEqual(
            masker.mask(lengths: [10], paddedLength: 12, stream: &rng), [UInt8](repeating: 1, count: 10) + [0, 0])
        // L < span: nothing masked (the pipeline drops these)
        XCTAssertEqual(masker.mask(lengths: [9], paddedLength: 9, stream: &rng), [UInt8](repeating: 0, count: 9))
        XCTAssertEqual(masker.spanCount(length: 100, u: 0.99), 7)
        XCTAssertEqual(masker.spanCount(length: 10, u: 0.1), 2)
    }

    /// Same key → same mask; the key, not the caller, decides (rank independence).
    func testDeterministicByKey() {
        let masker = SpanMasker()
        var a = RandomStream(seed: 9, step: 2, microBatch: 17, purpose: .mask)
        var b = RandomStream(seed: 9, step: 2, microBatch: 17, purpose: .mask)
        var c = RandomStream(seed: 9, step: 2, microBatch: 18, purpose: .mask)
        let la = [200, 150, 90]
        let ma = masker.mask(lengths: la, paddedLength: 200, stream: &a)
        XCTAssertEqual(ma, masker.mask(lengths: la, paddedLength: 200, stream: &b))
        XCTAssertNotEqual(ma, masker.mask(lengths: la, paddedLength: 200, stream: &c))
    }

    /// The pipeline's filter: L < span + min_spans dropped and counted (conv2d and stack mappings).
    func testTooShortFilteredAndCounted() throws {
        // T0 = 1 + (n − 400)/160; conv2d L = ((T0 − 1)/2 − 1)/2 ≥ 12 ⟺ T0 ≥ 51; stack L = T0/2 ≥ 12 ⟺ T0 ≥ 24
        let T0s = [10, 23, 24, 50, 51, 52, 200]
        let lengths = T0s.map { 400 + 160 * ($0 - 1) }
        let cfg = DataOrderConfig(seed: 1, maxSamples: 160_000, maxFrames: 2000)
        let conv = try DataOrder(lengths: lengths, config: cfg, encoderLength: { ((($0 - 1) / 2) - 1) / 2 })
        XCTAssertEqual(conv.plan(epoch: 0, microBatchesPerStep: 1).droppedTooShort, 4)
        let stack = try DataOrder(lengths: lengths, config: cfg, encoderLength: { $0 / 2 })
        XCTAssertEqual(stack.plan(epoch: 0, microBatchesPerStep: 1).droppedTooShort, 2)
        XCTAssertEqual(lengths.indices.filter { stack.keeps($0) }, [2, 3, 4, 5, 6])
    }
}
