import Foundation
import XCTest
import Tensor
import TestSupport

// The CTC kernel against its Double reference, a brute-force sum over all paths, central finite differences
// in Double, hand-worked alignments, and PyTorch's ctc_loss (committed fixture).

/// A batch of CTC problems in test form.
struct CTCCase {
    var logits: [Double]  // [B, T, V]
    var inputLengths: [Int]
    var labels: [[Int32]]
    var frames: Int
    var vocab: Int
    var batch: Int { labels.count }
    var maxLabelLength: Int { labels.map(\.count).max() ?? 0 }

    static func random(
        _ rng: inout TestRNG, frames: Int, vocab: Int, inputLengths: [Int], labels: [[Int32]],
        scale: Double = 2
    ) -> CTCCase {
        CTCCase(
            logits: rng.uniform(labels.count * frames * vocab, -scale, scale), inputLengths: inputLengths,
            labels: labels, frames: frames, vocab: vocab)
    }

    /// The Float kernel on `logits`: losses and the gradient accumulated `times` times with per-utterance
    /// scales `weights` (nil: 1).
    func run(_ logits: [Float], weights: [Float]? = nil, times: Int = 1) -> (losses: [Float], grad: [Float]) {
        let x = FloatBuffer(logits)
        let losses = FloatBuffer(count: batch), grad = FloatBuffer(count: logits.count)
        let scratch = FloatBuffer(
            count: ctcScratchCount(
                batch: batch, frames: frames, vocab: vocab,
                maxLabelLength: maxLabelLength))
        let w = weights.map { FloatBuffer($0) }
        withPointers { lengths, flat, counts in
            for _ in 0..<times {
                ctcForwardBackward(
                    losses: losses.ptr, dLogits: grad.ptr, logits: x.ptr, gradScales: w?.ptr,
                    inputLengths: lengths, labels: flat, labelLengths: counts, batch: batch,
                    frames: frames, vocab: vocab, maxLabelLength: maxLabelLength, scratch: scratch.ptr)
            }
        }
        return (losses.array, grad.array)
    }

    /// `ctcLossMean` on `logits`: the mean, the impossible count, the (zeroed) losses and the gradient.
    func runMean(_ logits: [Float], times: Int = 1) -> (loss: Float, impossible: Int, losses: [Float], grad: [Float]) {
        let x = FloatBuffer(logits)
        let losses = FloatBuffer(count: batch), grad = FloatBuffer(count: logits.count)
        let scratch = FloatBuffer(
            count: ctcScratchCount(
                batch: batch, frames: frames, vocab: vocab,
                maxLabelLength: maxLabelLength))
        var result: (loss: Float, impossible: Int) = (0, 0)
        withPointers { lengths, flat, counts in
            for _ in 0..<times {
                result = ctcLossMean(
                    losses: losses.ptr, dLogits: grad.ptr, logits: x.ptr, inputLengths: lengths,
                    labels: flat, labelLengths: counts, batch: batch, frames: frames, vocab: vocab,
                    maxLabelLength: maxLabelLength, scratch: scratch.ptr)
            }
        }
        return (result.loss, result.impossible, losses.array, grad.array)
    }

    func withPointers(_ body: (UnsafePointer<Int32>, UnsafePointer<Int32>, UnsafePointer<Int32>) -> Void) {
        let lengths = inputLengths.map { Int32($0) }
        let flat: [Int32] = labels.flatMap { $0 } + [0]  // never empty, so the pointer exists
        let counts = labels.map { Int32($0.count) }
        lengths.withUnsafeBufferPointer { l in
            flat.withUnsafeBufferPointer { f in
                counts.withUnsafeBufferPointer { c in body(l.baseAddress!, f.baseAddress!, c.baseAddress!) }
            }
        }
    }

    /// The Double reference's losses with impossible ones as 0 (what the kernel's gradient differentiates).
    func referenceLosses(_ logits: [Double]) -> [Double] {
        CTCReference.lossesAndGradient(
            logits: logits, inputLengths: inputLengths, labels: labels, frames: frames,
            vocab: vocab
        ).losses.map { $0 == .infinity ? 0 : $0 }
    }
}

final class CTCTests: XCTestCase {
    func testMatchesDoubleReference() {
        var rng = TestRNG(40)
        let c = CTCCase.random(
            &rng, frames: 12, vocab: 6, inputLengths: [12, 9, 7, 12, 3],
            labels: [[], [2], [1, 3, 3], [5, 4, 1, 2, 2], [1, 1]], scale: 3)
        let (losses, grad) = c.run(c.logits.floats)
        let ref = CTCReference.lossesAndGradient(
            logits: c.logits.floats.doubles, inputLengths: c.inputLengths,
            labels: c.labels, frames: c.frames, vocab: c.vocab)
        assertClose(losses, ref.losses, rtol: 2e-7, atol: 1e-7, "CTC losses")
        assertClose(grad, ref.gradient, rtol: 1e-5, atol: 1e-7, "CTC gradient")
        // Per-utterance scales multiply each utterance's gradient.
        let w: [Float] = [0.5, -2, 3, 0.25, 1]
        let scaled = c.run(c.logits.floats, weights: w).grad
        let refScaled = CTCReference.lossesAndGradient(
            logits: c.logits.floats.doubles, inputLengths: c.inputLengths,
            labels: c.labels, frames: c.frames, vocab: c.vocab,
            weights: w.doubles
        ).gradient
        assertClose(scaled, refScaled, rtol: 1e-5, atol: 3e-7, "CTC scaled gradient")
    }

    /// A realistic length (6 s of 20 ms frames, 100 letters, a loss of ~700): the Double recursions keep the
    /// gradient at Float accuracy (with Float α, β it was off by ~1e-3 relative).
    func testLongUtteranceAccuracy() {
        var rng = TestRNG(47)
        let labels = (0..<100).map { _ in Int32(1 + rng.int(29)) }
        let c = CTCCase.random(
            &rng, frames: 300, vocab: 30, inputLengths: [300, 250], labels: [labels, labels],
            scale: 4)
        let (losses, grad) = c.run(c.logits.floats)
        let ref = CTCReference.lossesAndGradient(
            logits: c.logits.floats.doubles, inputLengths: c.inputLengths,
            labels: c.labels, frames: c.frames, vocab: c.vocab)
        assertClose(losses, ref.losses, rtol: 2e-7, atol: 0, "long CTC losses")
        assertClose(grad, ref.gradient, rtol: 1e-5, atol: 1e-7, "long CTC gradient")
    }

    func testBruteForceEnumeration() {
        var rng = TestRNG(41)
        let cases: [(Int, Int, [Int32])] = [
            (5, 3, [1, 2]), (5, 3, [1, 1]), (4, 3, [2]), (3, 4, []),
            (6, 3, [2, 1, 2]), (3, 3, [1, 1]), (2, 3, [1, 1]), (1, 2, [1])
        ]
        for (t, v, labels) in cases {
            let x = rng.uniform(t * v, -2, 2).floats.doubles
            let brute = CTCReference.bruteForce(logits: x, frames: t, vocab: v, labels: labels)
            let c = CTCCase(logits: x, inputLengths: [t], labels: [labels], frames: t, vocab: v)
            let ref = CTCReference.lossesAndGradient(
                logits: x, inputLengths: [t], labels: [labels], frames: t,
                vocab: v)
            let kernel = c.run(x.floats).losses[0]
            if brute == .infinity {
                XCTAssertEqual(ref.losses[0], .infinity, "T=\(t) \(labels): reference")
                XCTAssertEqual(kernel, .infinity, "T=\(t) \(labels): kernel")
                continue
            }
            XCTAssertEqual(ref.losses[0], brute, accuracy: 1e-12 * max(1, brute), "T=\(t) \(labels): reference")
            XCTAssertEqual(Double(kernel), brute, accuracy: 2e-7 * max(1, brute), "T=\(t) \(labels): kernel")
        }
    }

    func testFiniteDifferences() {
        var rng = TestRNG(42)
        // Includes an impossible utterance ([3, 3] in 2 frames): loss counted as 0, gradient 0.
        let c = CTCCase.random(
            &rng, frames: 7, vocab: 5, inputLengths: [7, 5, 2, 6],
            labels: [[1, 2, 2], [4], [3, 3], []])
        checkGradients(
            inputs: [c.logits], outputCount: c.batch, reference: { c.referenceLosses($0[0]) },
            analytic: { f, dy, times in [c.run(f[0], weights: dy, times: times).grad] }, "CTC")
        checkGradients(
            inputs: [c.logits], outputCount: 1,
            reference: {
                [
                    CTCReference.mean(
                        logits: $0[0], inputLengths: c.inputLengths, labels: c.labels, frames: c.frames,
                        vocab: c.vocab
                    ).loss
                ]
            },
            analytic: { f, dy, times in
                [c.runMean(f[0], times: times).grad.map { $0 * dy[0] }]
            }, atol: 1e-6, "CTC mean")
    }

    /// "aa" needs a blank between the two a's: 2 frames cannot carry it; in 3 frames the one alignment is a·∅·a.
    func testRepeatsNeedABlank() {
        XCTAssertEqual(ctcMinimumFrames([Int32]([1, 1])), 3)
        XCTAssertEqual(ctcMinimumFrames([Int32]([1, 2])), 2)
        XCTAssertEqual(ctcMinimumFrames([Int32]([1, 1, 1, 2, 2])), 8)
        XCTAssertEqual(ctcMinimumFrames([Int32]()), 0)
        var rng = TestRNG(43)
        let v = 4
        let x = rng.uniform(3 * v, -2, 2).floats.doubles
        let lp = (0..<3).map { t -> [Double] in
            let row = Array(x[(t * v)..<((t + 1) * v)])
            let z = log(row.reduce(0) { $0 + exp($1) })
            return row.map { $0 - z }
        }
        let three = CTCCase(logits: x, inputLengths: [3], labels: [[1, 1]], frames: 3, vocab: v).run(x.floats).losses
        XCTAssertEqual(Double(three[0]), -(lp[0][1] + lp[1][0] + lp[2][1]), accuracy: 1e-5)
        let two = CTCCase(logits: x, inputLengths: [2], labels: [[1, 1]], frames: 3, vocab: v).run(x.floats)
        XCTAssertEqual(two.losses[0], .infinity)
        XCTAssertEqual(two.grad, [Float](repeating: 0, count: 3 * v), "an impossible utterance gets no gradient")
        // Different labels need no blank: "ab" in 2 frames is a·b.
        let ab = CTCCase(logits: x, inputLengths: [2], labels: [[1, 2]], frames: 3, vocab: v).run(x.floats).losses
        XCTAssertEqual(Double(ab[0]), -(lp[0][1] + lp[1][2]), accuracy: 1e-5)
    }

    func testImpossibleAlignmentZeroedAndCounted() {
        var rng = TestRNG(44)
        let c = CTCCase.random(
            &rng, frames: 6, vocab: 5, inputLengths: [6, 2, 6, 2],
            labels: [[1, 2], [2, 2], [3], [1, 2, 3]])
        let out = c.runMean(c.logits.floats)
        XCTAssertEqual(out.impossible, 2)
        XCTAssertEqual(out.losses[1], 0)
        XCTAssertEqual(out.losses[3], 0)
        XCTAssertTrue(out.losses[0] > 0 && out.losses[2] > 0)
        for b in [1, 3] {
            XCTAssertEqual(Array(out.grad[(b * 30)..<((b + 1) * 30)]), [Float](repeating: 0, count: 30))
        }
        // The mean divides by the batch (impossible utterances included) and each loss by its label length.
        let expected = (Double(out.losses[0]) / 2 + Double(out.losses[2])) / 4
        XCTAssertEqual(Double(out.loss), expected, accuracy: 1e-6)
        let ref = CTCReference.mean(
            logits: c.logits.floats.doubles, inputLengths: c.inputLengths, labels: c.labels,
            frames: c.frames, vocab: c.vocab)
        XCTAssertEqual(Double(out.loss), ref.loss, accuracy: 1e-5 * ref.loss)
        assertClose(out.grad, ref.gradient, rtol: 1e-5, atol: 1e-7, "CTC mean gradient")
    }

    func testPaddingRowsGetZeroGradientAndDoNotMatter() {
        var rng = TestRNG(45)
        var c = CTCCase.random(&rng, frames: 9, vocab: 4, inputLengths: [9, 4, 0], labels: [[1, 3], [2], []])
        let (losses, grad) = c.run(c.logits.floats)
        for t in 4..<9 {
            XCTAssertEqual(Array(grad[(9 * 4 + t * 4)..<(9 * 4 + t * 4 + 4)]), [0, 0, 0, 0], "row \(t) of utterance 1")
        }
        XCTAssertEqual(losses[2], 0, "no frames, no labels: probability 1")
        XCTAssertEqual(Array(grad[72..<108]), [Float](repeating: 0, count: 36))
        // Changing the padding logits changes nothing.
        for i in (9 * 4 + 4 * 4)..<(18 * 4) { c.logits[i] = 100 }
        let again = c.run(c.logits.floats)
        XCTAssertEqual(again.losses, losses)
        XCTAssertEqual(again.grad, grad)
    }

    /// Utterances are split over the threads; each is computed with the same arithmetic on any thread count.
    func testSameBitsOnAnyThreadCount() {
        defer { _ = Compute.fp32(threads: 1) }
        var rng = TestRNG(46)
        let c = CTCCase.random(
            &rng, frames: 10, vocab: 6, inputLengths: [10, 8, 9, 3, 10],
            labels: [[1, 2, 3], [4, 4], [5], [1, 1, 1], [2, 3, 2, 3]])
        var outputs: [[Float]] = []
        for threads in [1, 2, 3] {
            _ = Compute.fp32(threads: threads)  // sizes the thread pool
            let out = c.runMean(c.logits.floats)
            outputs.append([out.loss] + out.losses + out.grad)
        }
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertEqual(outputs[0], outputs[2])
    }

    /// PyTorch's `F.ctc_loss` (float64) on the committed fixture (make_ctc_fixture.py beside it).
    func testMatchesPyTorch() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/ctc.safetensors")
        let f = try FixtureTensors(path: url.path)
        let shape = try f.shape("logits")
        let (b, t, v) = (shape[0], shape[1], shape[2])
        let lengths = try f.ints("label_lengths")
        var flat = try f.ints("labels")[...]
        var labels: [[Int32]] = []
        for n in lengths {
            labels.append(flat.prefix(n).map { Int32($0) })
            flat = flat.dropFirst(n)
        }
        let logits = try f.doubles("logits")
        let c = CTCCase(logits: logits, inputLengths: try f.ints("input_lengths"), labels: labels, frames: t, vocab: v)
        XCTAssertEqual(c.batch, b)
        let torchLosses = try f.doubles("losses")
        let torchMean = try f.doubles("loss_mean")[0]
        let torchGrad = try f.doubles("grad_mean")
        XCTAssertEqual(torchLosses[3], .infinity, "the fixture's impossible utterance")
        // Float kernel: the losses to Float rounding (2e-7 relative), the mean 1e-6 relative, the gradient within
        // 1e-5 relative + 1e-7.
        assertClose(c.run(logits.floats).losses, torchLosses, rtol: 2e-7, atol: 0, "CTC losses vs torch")
        let mean = c.runMean(logits.floats)
        XCTAssertEqual(mean.impossible, 1)
        XCTAssertEqual(Double(mean.loss), torchMean, accuracy: 1e-6 * torchMean)
        assertClose(mean.grad, torchGrad, rtol: 1e-5, atol: 1e-7, "CTC mean gradient vs torch")
        // Double reference: 1e-10.
        let ref = CTCReference.mean(logits: logits, inputLengths: c.inputLengths, labels: labels, frames: t, vocab: v)
        XCTAssertEqual(ref.loss, torchMean, accuracy: 1e-10 * torchMean)
        assertClose(ref.gradient, torchGrad, rtol: 1e-10, atol: 1e-12, "CTC Double reference gradient vs torch")
    }
}
