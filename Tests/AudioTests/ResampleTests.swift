import Audio
import Foundation
import XCTest

final class ResampleTests: XCTestCase {
    /// Error of the resampled 1 kHz sine against the ideal 16 kHz sine, in dB relative to the sine's
    /// energy, over the middle of the signal (edges excluded: 0.1 s each side).
    func errorDB(inputRate: Int, quality: ResampleQuality = .medium) throws -> Double {
        let seconds = 1.0, phase = 0.3
        let x = sine(freq: 1000, rate: inputRate, seconds: seconds, amp: 0.5, phase: phase)
        let y = try Resampler.resample(x, from: inputRate, quality: quality)
        let expected = Int((Double(x.count) * 16000 / Double(inputRate)).rounded())
        XCTAssertLessThanOrEqual(abs(y.count - expected), 1, "output length \(y.count) vs \(expected)")
        let ideal = sine(freq: 1000, rate: 16000, seconds: seconds, amp: 0.5, phase: phase)
        var err = 0.0, ref = 0.0
        for i in 1600..<(min(y.count, ideal.count) - 1600) {
            let d = Double(y[i]) - Double(ideal[i])
            err += d * d; ref += Double(ideal[i]) * Double(ideal[i])
        }
        let db = 10 * log10(err / ref)
        print("resample 1 kHz sine \(inputRate) → 16000 (\(quality)): error \(String(format: "%.1f", db)) dB")
        return db
    }

    func testSineFrom22050() throws { XCTAssertLessThan(try errorDB(inputRate: 22_050), -60) }
    func testSineFrom8000() throws { XCTAssertLessThan(try errorDB(inputRate: 8_000), -60) }
    func testSineFrom48000() throws { XCTAssertLessThan(try errorDB(inputRate: 48_000), -60) }
    func testSineFrom44100Best() throws { XCTAssertLessThan(try errorDB(inputRate: 44_100, quality: .best), -60) }

    /// 16 kHz passes through untouched.
    func testIdentityAt16k() throws {
        let x = sine(freq: 440, rate: 16000, seconds: 0.1)
        XCTAssertEqual(try Resampler.resample(x, from: 16000), x)
    }

    /// Stereo file at 22.05 kHz through libsndfile: channels averaged, then resampled.
    func testStereoFileDownmixAndResample() throws {
        let dir = try makeTempDir(self)
        let left = sine(freq: 1000, rate: 22050, seconds: 1, amp: 0.6)
        let right = [Float](repeating: 0, count: left.count)
        var inter = [Float](); inter.reserveCapacity(2 * left.count)
        for i in 0..<left.count { inter.append(left[i]); inter.append(right[i]) }
        let p = dir.appendingPathComponent("stereo.flac").path
        try AudioWriter.write(path: p, samples: inter, sampleRate: 22050, channels: 2, format: .flac16)
        let info = try AudioDecoder.info(path: p)
        XCTAssertEqual(info, AudioInfo(frames: left.count, sampleRate: 22050, channels: 2))
        let y = try AudioDecoder.load(path: p)
        XCTAssertEqual(y.count, 16000)
        let ideal = sine(freq: 1000, rate: 16000, seconds: 1, amp: 0.3)
        var err = 0.0, ref = 0.0
        for i in 1600..<14400 { let d = Double(y[i] - ideal[i]); err += d * d; ref += Double(ideal[i] * ideal[i]) }
        XCTAssertLessThan(10 * log10(err / ref), -60)  // int16 quantisation is ≈ −80 dB here
    }

    /// libsndfile's message travels in the error, with the file name.
    func testErrorsNameTheFile() throws {
        let dir = try makeTempDir(self)
        let p = dir.appendingPathComponent("missing.wav").path
        XCTAssertThrowsError(try AudioDecoder.load(path: p)) { e in
            let e = e as! AudioError
            XCTAssertEqual(e.kind, .unreadable)
            XCTAssertEqual(e.path, p)
            XCTAssertFalse(e.message.isEmpty)
            XCTAssertTrue("\(e)".contains("missing.wav"))
        }
    }
}
