import Audio
import Foundation
import XCTest

/// Folder of the committed fixtures (found from this file's path: the tests run from the source checkout).
let fixturesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

/// A fresh temporary folder, removed by the test's teardown block.
func makeTempDir(_ test: XCTestCase) throws -> URL {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("w2vbert-audio-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: d) }
    return d
}

/// A sine (plus a little deterministic "noise" sine) of `seconds` at `rate`, amplitude `amp`.
func sine(freq: Double, rate: Int, seconds: Double, amp: Double = 0.5, phase: Double = 0) -> [Float] {
    let n = Int(Double(rate) * seconds)
    return (0..<n).map { Float(amp * sin(2 * Double.pi * freq * Double($0) / Double(rate) + phase)) }
}

/// Speech-like test signal: a few harmonics with a slow amplitude envelope.
func speechLike(rate: Int, seconds: Double, seed: Double = 1) -> [Float] {
    let n = Int(Double(rate) * seconds)
    return (0..<n).map { i in
        let t = Double(i) / Double(rate)
        let f0 = 120 + 30 * sin(2 * Double.pi * 0.7 * t + seed)
        var s = 0.0
        for h in 1...8 { s += sin(2 * Double.pi * f0 * Double(h) * t + Double(h) * seed) / Double(h) }
        return Float(0.15 * s * (0.6 + 0.4 * sin(2 * Double.pi * 2.3 * t)))
    }
}

/// Prints first values, max abs diff and OK/NOT OK (llm.c's check_tensor), and returns the max diff.
@discardableResult
func checkTensor(_ a: [Float], _ b: [Float], _ label: String, atol: Float) -> Float {
    precondition(a.count == b.count)
    var maxDiff: Float = 0, at = 0
    for i in 0..<a.count where abs(a[i] - b[i]) > maxDiff {
        maxDiff = abs(a[i] - b[i])
        at = i
    }
    print(
        "\(label): n=\(a.count) first \(a.prefix(3)) vs \(b.prefix(3)); max abs diff \(maxDiff) at \(at) \(maxDiff <= atol ? "OK" : "NOT OK")"
    )
    return maxDiff
}
