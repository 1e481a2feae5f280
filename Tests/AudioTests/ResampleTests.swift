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
            err += d * d
            ref += Double(ideal[i]) * Double(ideal[i])
        }
        let db = 10 * log10(err / ref)
        print("resample 1 kHz sine \(inputRate) → 16000 (\(quality)): error \(String(format: "%.1f", db)) dB")
        return db
    }

    func testSineFrom22050() throws { XCTAssertLessThan(try errorDB(inputRate: 22_050), -60) }
    func testSineFrom8000() throws { XCTAssertLessThan(try errorDB(inputRate: 8_000), -60) }
    func testSineFrom48000() throws { XCTAssertLessThan(try errorDB(inputRate: 48_000), -60) }
    func testSineFrom44100Best() throws { XCTAssertLessThan(try errorDB(inputRate: 44_100, quality: .best), -60) }

    // MARK: The polyphase resampler (the default)

    /// Against the analytic sine at the usual rates, low and high in the passband (≤ 90 % of 8 kHz or of
    /// the input's Nyquist frequency): the 100 dB design leaves float round-off (≈ −120 dB); L(n, R) exactly.
    func testPolyphaseSines() throws {
        for rate in [8_000, 11_025, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000] {
            for freq in [1_000.0, 0.85 * Double(min(rate, 16_000)) / 2] {
                let x = sine(freq: freq, rate: rate, seconds: 1, amp: 0.5, phase: 0.3)
                let y = try Resampler.resample(x, from: rate, quality: .polyphase)
                XCTAssertEqual(y.count, resampledLengthRule(frames: x.count, rate: rate))
                let ideal = sine(freq: freq, rate: 16_000, seconds: 1, amp: 0.5, phase: 0.3)
                var err = 0.0, ref = 0.0
                for i in 1600..<14_400 {
                    let d = Double(y[i]) - Double(ideal[i])
                    err += d * d
                    ref += Double(ideal[i] * ideal[i])
                }
                print(
                    "polyphase \(rate) Hz, \(Int(freq)) Hz sine: error \(String(format: "%.1f", 10 * log10(err / ref))) dB"
                )
                XCTAssertLessThan(10 * log10(err / ref), -95, "\(rate) Hz, \(freq) Hz sine")
            }
        }
    }

    /// Stop band: 22.05 kHz input at 8.5, 9.5 and 11 kHz would alias to 7.5, 6.5 and 5 kHz; they must go.
    func testPolyphaseStopBand() throws {
        for freq in [8_500.0, 9_500, 11_000] {
            let x = sine(freq: freq, rate: 22_050, seconds: 1, amp: 0.5)
            let y = try Resampler.resample(x, from: 22_050, quality: .polyphase)
            let ref = 0.125 * 12_800  // energy of a 0.5-amplitude sine over 12 800 samples
            let e = y[1600..<14_400].reduce(0.0) { $0 + Double($1) * Double($1) }
            print("polyphase stop band \(Int(freq)) Hz: \(String(format: "%.1f", 10 * log10(e / ref))) dB")
            XCTAssertLessThan(10 * log10(e / ref), -95, "\(freq) Hz")
        }
    }

    /// Streaming in uneven chunks gives the same bits as one call; libsamplerate's MEDIUM, whose band edges it
    /// shares, agrees to far below the features' resolution on a signal inside the passband.
    func testPolyphaseStreamsAndAgreesWithLibsamplerate() throws {
        var state: UInt64 = 5
        var rng = { () -> UInt64 in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 33
        }
        let n = 50_000
        var x = [Float](repeating: 0, count: n)
        for _ in 0..<20 {
            let f = Double(rng() % 7_000) + 50, a = Double(rng() % 1000) / 40_000, ph = Double(rng() % 628) / 100
            for i in 0..<n { x[i] += Float(a * sin(2 * Double.pi * f * Double(i) / 22_050 + ph)) }
        }
        let whole = try Resampler.resample(x, from: 22_050, quality: .polyphase)
        let filter = try XCTUnwrap(PolyphaseFilter.shared(rate: 22_050, target: 16_000))
        let stream = PolyphaseResampler(filter: filter)
        var out = [Float](), at = 0, k = 0
        while at < n {
            let c = min(n - at, [1, 7, 300, 4096, 17][k % 5])
            k += 1
            x.withUnsafeBufferPointer { stream.process($0.baseAddress! + at, count: c, endOfInput: false, into: &out) }
            at += c
        }
        let zeros = [Float](repeating: 0, count: 2048)
        zeros.withUnsafeBufferPointer { stream.process($0.baseAddress!, count: 2048, endOfInput: true, into: &out) }
        XCTAssertEqual(Array(out.prefix(whole.count)), whole)
        let medium = try Resampler.resample(x, from: 22_050, quality: .medium)
        var err = 0.0, ref = 0.0
        for i in 1600..<(whole.count - 1600) {
            let d = Double(whole[i] - medium[i])
            err += d * d
            ref += Double(medium[i] * medium[i])
        }
        print("polyphase vs libsamplerate MEDIUM: \(String(format: "%.1f", 10 * log10(err / ref))) dB")
        XCTAssertLessThan(10 * log10(err / ref), -90)
    }

    /// A ratio with more than `maxPhases` phases (44 101 Hz: L = 16 000) or too large a table falls back to
    /// libsamplerate's MEDIUM.
    func testPolyphaseFallsBackForOddRates() throws {
        XCTAssertNil(PolyphaseFilter.shared(rate: 44_101, target: 16_000))
        XCTAssertNil(
            PolyphaseFilter.shared(rate: 767_996, target: 16_000), "4000 phases × ~6200 taps: too large a table")
        for rate in [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 768_000] {
            XCTAssertNotNil(PolyphaseFilter.shared(rate: rate, target: 16_000))
        }
        let x = sine(freq: 1000, rate: 44_101, seconds: 0.2)
        XCTAssertEqual(
            try Resampler.resample(x, from: 44_101, quality: .polyphase),
            try Resampler.resample(x, from: 44_101, quality: .medium))
    }

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
        var inter = [Float]()
        inter.reserveCapacity(2 * left.count)
        for i in 0..<left.count {
            inter.append(left[i])
            inter.append(right[i])
        }
        let p = dir.appendingPathComponent("stereo.flac").path
        try AudioWriter.write(path: p, samples: inter, sampleRate: 22050, channels: 2, format: .flac16)
        let info = try AudioDecoder.info(path: p)
        XCTAssertEqual(info, AudioInfo(frames: left.count, sampleRate: 22050, channels: 2))
        let y = try AudioDecoder.load(path: p)
        XCTAssertEqual(y.count, 16000)
        let ideal = sine(freq: 1000, rate: 16000, seconds: 1, amp: 0.3)
        var err = 0.0, ref = 0.0
        for i in 1600..<14400 {
            let d = Double(y[i] - ideal[i])
            err += d * d
            ref += Double(ideal[i] * ideal[i])
        }
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
