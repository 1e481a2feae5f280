import Audio
import Foundation
import XCTest

/// Float WAV files holding NaN or infinite samples are broken: the decoder refuses them with the count,
/// so `prepare --verify` skips them, the loader skips and counts them, and nothing turns them into numbers.
final class NonFiniteAudioTests: XCTestCase {
    /// 3 s of 32-bit float audio at `rate` (`channels` interleaved) with NaN at `nans` frame indices and
    /// +infinity at `infs`, in channel `channel`; written by libsndfile.
    func brokenFloatWAV(
        _ url: URL, rate: Int = 16000, channels: Int = 1, channel: Int = 0,
        nans: [Int], infs: [Int]
    ) throws {
        let mono = speechLike(rate: rate, seconds: 3)
        var x = mono.flatMap { v in [Float](repeating: v, count: channels) }
        for i in nans { x[i * channels + channel] = .nan }
        for i in infs { x[i * channels + channel] = .infinity }
        try AudioWriter.write(path: url.path, samples: x, sampleRate: rate, channels: channels, format: .wavFloat)
    }

    /// 100 NaN and one +infinity in 3 s: the decoder throws `.decode` naming the file and both counts, for
    /// the whole file, for a crop holding them, at 44.1 kHz stereo (resampled, one channel broken); a crop
    /// of finite samples decodes.
    func testDecoderRefusesNonFiniteSamplesWithTheirCount() throws {
        let dir = try makeTempDir(self)
        let path = dir.appendingPathComponent("nan.wav").path
        let nans = (0..<100).map { 1000 + 300 * $0 }  // frames 1000 ... 30700
        try brokenFloatWAV(URL(fileURLWithPath: path), nans: nans, infs: [40_000])
        XCTAssertEqual(try AudioDecoder.info(path: path).frames, 48_000, "the header alone looks fine")
        let expected = AudioError(.decode, path: path, "101 non-finite samples (100 NaN, 1 infinite) in the audio")
        XCTAssertThrowsError(try AudioDecoder.load(path: path)) { XCTAssertEqual($0 as? AudioError, expected) }
        XCTAssertEqual("\(expected)", "\(path): decode: 101 non-finite samples (100 NaN, 1 infinite) in the audio")
        XCTAssertThrowsError(try AudioDecoder.load(path: path, range: 39_000..<41_000)) { e in
            let one = AudioError(.decode, path: path, "1 non-finite samples (0 NaN, 1 infinite) in the audio")
            XCTAssertEqual(e as? AudioError, one)
        }
        let clean = try AudioDecoder.load(path: path, range: 41_000..<48_000)
        XCTAssertEqual(clean.count, 7_000)
        XCTAssert(clean.allSatisfy(\.isFinite))

        let stereo = dir.appendingPathComponent("stereo.wav").path
        try brokenFloatWAV(
            URL(fileURLWithPath: stereo), rate: 44_100, channels: 2, channel: 1,
            nans: [5, 70_000], infs: [])
        let two = AudioError(.decode, path: stereo, "2 non-finite samples (2 NaN, 0 infinite) in the audio")
        XCTAssertThrowsError(try AudioDecoder.load(path: stereo)) { XCTAssertEqual($0 as? AudioError, two) }
        for q in ResampleQuality.allCases {
            XCTAssertThrowsError(try AudioDecoder.load(path: stereo, quality: q), "\(q)")
        }
    }

    /// The fbank does not floor a NaN energy into a number: frames touching a NaN sample are NaN.
    func testFbankKeepsNaN() throws {
        var x = speechLike(rate: 16000, seconds: 1)
        let clean = KaldiFbank().compute(x)
        x[8_000] = .nan
        let f = KaldiFbank().compute(x)
        let frames = clean.count / 80
        for t in 0..<frames {
            let touches = (160 * t..<(160 * t + 400)).contains(8_000)
            let row = Array(f[(t * 80)..<((t + 1) * 80)])
            if touches {
                XCTAssert(row.allSatisfy(\.isNaN), "frame \(t)")
            } else {
                XCTAssertEqual(row, Array(clean[(t * 80)..<((t + 1) * 80)]), "frame \(t)")
            }
        }
    }

    /// Header-only prepare cannot see samples and keeps the file (documented); `verify` decodes, reports
    /// the file with the count, and leaves it out of the manifests.
    func testPrepareVerifySkipsNonFiniteFiles() throws {
        let dir = try makeTempDir(self)
        try brokenFloatWAV(
            dir.appendingPathComponent("nan.wav"), nans: (0..<100).map { 1000 + 300 * $0 },
            infs: [40_000])
        try AudioWriter.write(
            path: dir.appendingPathComponent("good.wav").path,
            samples: speechLike(rate: 16000, seconds: 1), sampleRate: 16000, format: .wavFloat)
        var prep = CorpusPreparer()
        prep.validPercent = 0
        let headers = try prep.prepare(root: dir.path)
        XCTAssertEqual(headers.train.entries.map(\.path), ["good.wav", "nan.wav"])
        prep.verify = true
        let r = try prep.prepare(root: dir.path)
        XCTAssertEqual(r.train.entries.map(\.path), ["good.wav"])
        XCTAssertEqual(r.skipped.map(\.path), ["nan.wav"])
        XCTAssertEqual(r.skipped.map(\.kind), [.decode])
        XCTAssertEqual(r.skipped.map(\.reason), ["decode: 101 non-finite samples (100 NaN, 1 infinite) in the audio"])
    }

    /// The loader skips a file with non-finite samples like any other bad file: reported, counted, dropped
    /// from its micro-batch, and counted against max_bad_fraction (two of 20 files: 0.25 allows them,
    /// 0.05 (one file) aborts naming them). Every delivered feature is finite.
    func testLoaderSkipsAndCountsNonFiniteFiles() throws {
        let dir = try makeTempDir(self)
        var entries = [Manifest.Entry]()
        for i in 0..<20 {
            let name = "u\(i).wav"
            let url = dir.appendingPathComponent(name)
            if i == 4 || i == 11 {
                try brokenFloatWAV(url, nans: i == 4 ? [123] : [], infs: i == 11 ? [45_000] : [])
                entries.append(.init(path: name, samples: 48_000))
            } else {
                let n = 16000 + 1600 * i
                let x = speechLike(rate: 16000, seconds: Double(n) / 16000, seed: Double(i))
                try AudioWriter.write(path: url.path, samples: x, sampleRate: 16000)
                entries.append(.init(path: name, samples: n))
            }
        }
        let manifest = Manifest(root: dir.path, entries: entries)
        let config = DataOrderConfig(seed: 5, maxSamples: 60_000, maxFrames: 600)
        let order = try DataOrder(
            lengths: entries.map(\.samples), config: config,
            encoderLength: { ((($0 - 1) / 2) - 1) / 2 })
        final class Lines: @unchecked Sendable {
            var all = [String]()
            let lock = NSLock()
            func append(_ s: String) {
                lock.lock()
                all.append(s)
                lock.unlock()
            }
        }
        typealias Run = (batches: [MicroBatch], error: Error?, stats: LoaderStats, reports: [String])
        func run(_ fraction: Double) throws -> Run {
            let lines = Lines()
            var opts = LoaderOptions()
            opts.maxBadFraction = fraction
            opts.report = { s in lines.append(s) }
            let loader = try DataLoader(manifest: manifest, order: order, sharding: Sharding(), options: opts)
            var batches = [MicroBatch]()
            var error: Error? = nil
            do { for _ in 0..<30 { batches.append(try loader.next()) } } catch let e { error = e }
            let stats = loader.stats
            loader.stop()
            return (batches, error, stats, lines.all)
        }
        let ok = try run(0.25)
        XCTAssertNil(ok.error)
        XCTAssertEqual(ok.stats.badFiles, 2)
        XCTAssertEqual(ok.reports.count, 2, "\(ok.reports)")
        for needle in [
            "u4.wav: decode: 1 non-finite samples (1 NaN, 0 infinite)",
            "u11.wav: decode: 1 non-finite samples (0 NaN, 1 infinite)"
        ] {
            XCTAssert(ok.reports.contains { $0.contains(needle) }, "\(needle) in \(ok.reports)")
        }
        let delivered = Set(ok.batches.flatMap(\.paths).map { ($0 as NSString).lastPathComponent })
        XCTAssertEqual(delivered.count, 18)
        XCTAssertFalse(delivered.contains("u4.wav") || delivered.contains("u11.wav"))
        XCTAssert(ok.batches.allSatisfy { $0.features.allSatisfy(\.isFinite) })
        let aborted = try run(0.05)
        guard case let .tooManyBadFiles(count, _, files)? = aborted.error as? LoaderError else {
            return XCTFail("expected tooManyBadFiles, got \(String(describing: aborted.error))")
        }
        XCTAssertEqual(count, 2)
        XCTAssertEqual(Set(files.map { ($0 as NSString).lastPathComponent }), ["u4.wav", "u11.wav"])
    }
}
