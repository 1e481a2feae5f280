import Audio
import Foundation
import TestSupport
import Training
import W2VBert
import XCTest

/// `embed` of files longer than --window: overlapping windows whose kept frames tile the file.
final class LongFormEmbedTests: XCTestCase {
    /// Every window keeps consecutive frames, together all of 0..<T once, each inside what the window computes
    /// (its start/r + encoderLength of its fbank frames), with `context` frames on both sides but at the ends.
    func testWindowsTileTheFile() throws {
        for frontend in ["conv2d", "stack"] {
            let c = try Config.load(preset: "tiny", overrides: ["model.frontend=\(frontend)"])
            for (window, context) in [(8.0, 2.0), (3.0, 0.0), (60.0, 10.0), (1.0, 5.0)] {
                let w = EmbeddingWindows(c, window: window, context: context)
                let r = w.subsampling
                for t0 in [w.frames + 1, w.frames + 7, 3 * w.frames - 5, 25_003, 360_000] {
                    let total = c.encoderLength(t0: t0)
                    let spans = w.spans(t0: t0, total: total)
                    var next = 0
                    for (i, s) in spans.enumerated() {
                        XCTAssertEqual(s.start % r, 0)
                        XCTAssertEqual(s.keep.lowerBound, next, "\(frontend) \(window) \(t0) window \(i)")
                        XCTAssertFalse(s.keep.isEmpty)
                        let first = s.start / r, len = min(t0, s.start + w.frames) - s.start
                        let computed = first..<(first + c.encoderLength(t0: len))
                        XCTAssert(computed.contains(s.keep.lowerBound) && s.keep.upperBound <= computed.upperBound)
                        if i > 0 { XCTAssertGreaterThanOrEqual(s.keep.lowerBound - first, w.contextFrames / r) }
                        if i < spans.count - 1 {
                            XCTAssertGreaterThanOrEqual(computed.upperBound - s.keep.upperBound, w.contextFrames / r - 2)
                        }
                        next = s.keep.upperBound
                    }
                    XCTAssertEqual(next, total)
                }
            }
        }
    }

    /// On a trained tiny run: a 25 s file in 8 s windows gives [T, d] finite states; a window longer than the
    /// file gives exactly the whole-file states.
    func testLongFileInWindows() throws {
        let dir = NSTemporaryDirectory() + "w2v-longembed-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let exe = DistributedTrainingTests.exe
        let run = dir + "/run"
        var r = try runCommand(
            [exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir", run, "--max-steps", "2"]
                + DistributedTrainingTests.common, timeout: 300)
        XCTAssertEqual(r.status, 0, r.output)
        let n = 16000 * 25
        let x = (0..<n).map { j in Float(0.3 * sin(Double(j) * 0.02) * sin(Double(j) * 0.0007)) }
        let wav = dir + "/long.wav"
        try AudioWriter.write(path: wav, samples: x, sampleRate: 16000, format: .wav16)
        var states: [String: NpyArray] = [:]
        for (name, args) in [("whole", ["--window", "0"]), ("fits", ["--window", "30"]),
                             ("windows", ["--window", "8", "--context", "2"])] {
            let out = dir + "/\(name).npy"
            r = try runCommand([exe, "embed", "--checkpoint", run, wav, "--out", out] + args, timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
            states[name] = try Npy.read(path: out)
        }
        let whole = try XCTUnwrap(states["whole"]), windows = try XCTUnwrap(states["windows"])
        XCTAssertEqual(states["fits"]?.data, whole.data)
        XCTAssertEqual(windows.shape, whole.shape)
        XCTAssert(windows.data.allSatisfy { $0.isFinite })
        XCTAssertNotEqual(windows.data, whole.data, "8 s windows see less context than the whole file")
        r = try runCommand([exe, "embed", "--checkpoint", run, wav, "--out", dir + "/x.npy", "--window", "4",
                            "--context", "2"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
    }
}
