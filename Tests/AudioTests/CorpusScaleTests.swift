import Audio
import Foundation
import XCTest

/// The default corpus (Debian's fillets-ng-data-cs, installed by launch/setup.sh): real Ogg/Vorbis speech
/// at 22.05 and 44.1 kHz, mono and stereo.
let defaultCorpusFolder = "/usr/share/games/fillets-ng/sound"

func defaultCorpusFiles() throws -> [String] {
    guard let e = FileManager.default.enumerator(atPath: defaultCorpusFolder) else {
        XCTFail("\(defaultCorpusFolder) is missing: run launch/setup.sh (it installs fillets-ng-data-cs)")
        return []
    }
    return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".ogg") && $0.contains("/cs/") }.sorted()
        .map { defaultCorpusFolder + "/" + $0 }
}

/// Broadband deterministic test signal: speech-like harmonics plus white-ish noise (so every mel bin,
/// up to 8 kHz, has energy), at `rate`, `channels` interleaved.
func broadband(rate: Int, seconds: Double, channels: Int, seed: UInt64) -> [Float] {
    let base = speechLike(rate: rate, seconds: seconds, seed: Double(seed))
    var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [Float](repeating: 0, count: base.count * channels)
    for i in 0..<base.count {
        for c in 0..<channels {
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let noise = Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 1000 * 0.05
            out[i * channels + c] = base[i] * (c == 0 ? 1 : 0.7) + noise
        }
    }
    return out
}

final class CorpusScaleTests: XCTestCase {
    /// The 16 kHz length from the header alone (`AudioInfo.resampledLength`, the rule n or ⌊n·16000/R⌋)
    /// equals what decoding returns, across rates, channel counts, containers and frame counts that are
    /// and are not exact multiples (where libsamplerate's own termination can be one short).
    func testHeaderLengthRuleEqualsDecodedLength() throws {
        let dir = try makeTempDir(self)
        var checked = 0
        for rate in [8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000] {
            let q = rate / gcdTest(rate, 16_000)
            for n in [1, 399, rate, q * 37, q * 37 + 1, q * 37 - 1, rate * 2 + 123] {
                for (k, format) in [AudioWriter.Format.wav16, .flac16].enumerated() {
                    let channels = 1 + (n + k) % 2
                    let p = dir.appendingPathComponent("r\(rate)-n\(n)-\(k).\(format == .flac16 ? "flac" : "wav")").path
                    try AudioWriter.write(
                        path: p,
                        samples: broadband(
                            rate: rate, seconds: Double(n) / Double(rate) + 1e-9, channels: channels, seed: UInt64(n)),
                        sampleRate: rate, channels: channels, format: format)
                    let info = try AudioDecoder.info(path: p)
                    XCTAssertEqual(info.frames, n, p)
                    let rule = rate == 16_000 ? n : n * 16_000 / rate
                    XCTAssertEqual(info.resampledLength, rule, p)
                    let decoded = try AudioDecoder.load(path: p, range: 0..<Int.max / 1_000_000)
                    XCTAssertEqual(decoded.count, rule, p)
                    if rule > 0 { XCTAssertEqual(try AudioDecoder.load(path: p).count, rule, p) }
                    checked += 1
                }
            }
        }
        // Real speech: the committed fixture clips (16 kHz WAV) and default-corpus Ogg files at 22.05 and
        // 44.1 kHz, mono and stereo.
        let fixtures = try FileManager.default.contentsOfDirectory(
            atPath: fixturesDir.appendingPathComponent("fbank").path
        )
        .filter { $0.hasSuffix(".wav") }.map { fixturesDir.appendingPathComponent("fbank/" + $0).path }
        let corpus = try defaultCorpusFiles()
        var rates = Set<String>()
        for p in fixtures + stride(from: 0, to: corpus.count, by: max(1, corpus.count / 40)).map({ corpus[$0] }) {
            let info = try AudioDecoder.info(path: p)
            XCTAssertEqual(try AudioDecoder.load(path: p).count, info.resampledLength, p)
            rates.insert("\(info.sampleRate)/\(info.channels)")
            checked += 1
        }
        print("length rule: \(checked) files agree; real files at rate/channels \(rates.sorted())")
        XCTAssertTrue(rates.isSuperset(of: ["16000/1", "22050/1", "44100/2"]), "\(rates)")
    }

    /// A crop decoded by seeking equals the same stretch of the fully decoded file: samples to float
    /// rounding, fbank + CMVN (over the crop) within 1e-3. WAV (44.1 kHz stereo), FLAC (22.05 kHz) and
    /// Ogg/Vorbis (48 kHz), generated here, and real Ogg/Vorbis speech from the default corpus.
    func testSeekCropEqualsWholeFileStretch() throws {
        let dir = try makeTempDir(self)
        var files: [(String, Int)] = []  // path, crop length
        for (name, rate, channels, seconds, format) in [
            ("long.wav", 44_100, 2, 40.0, AudioWriter.Format.wav16),
            ("long.flac", 22_050, 1, 40.0, .flac16),
            ("long.ogg", 48_000, 1, 20.0, .oggVorbis),
        ] {
            let p = dir.appendingPathComponent(name).path
            try AudioWriter.write(
                path: p, samples: broadband(rate: rate, seconds: seconds, channels: channels, seed: 7),
                sampleRate: rate, channels: channels, format: format)
            files.append((p, 48_000))
        }
        // the three longest default-corpus files (real speech, 22.05/44.1 kHz Ogg). bat-p-zhov1.ogg @ L − c
        // is a target where libsndfile lands one Vorbis block (384 frames) off: the verified seek catches it.
        let corpus = try defaultCorpusFiles()
        let longest = try corpus.map { ($0, try AudioDecoder.info(path: $0).frames) }.sorted { $0.1 > $1.1 }.prefix(3)
        for (p, _) in longest { files.append((p, 24_000)) }

        let fbank = KaldiFbank()
        var worstSample: Float = 0, worstFeature: Float = 0
        for (p, c) in files {
            let whole = try AudioDecoder.load(path: p)
            let L = whole.count
            XCTAssertGreaterThan(L, 2 * c, p)
            for offset in [0, 1, 160, L / 3 + 7, L / 2, L - c, L - c / 2, L] {
                let crop = try AudioDecoder.load(path: p, range: offset..<(offset + c))
                let expected = Array(whole[min(offset, L)..<min(offset + c, L)])
                XCTAssertEqual(crop.count, expected.count, "\(p) @\(offset)")
                guard crop.count == expected.count, crop.count >= 400 else { continue }
                var ds: Float = 0
                for i in 0..<crop.count { ds = max(ds, abs(crop[i] - expected[i])) }
                worstSample = max(worstSample, ds)
                let T0 = fbank.numFrames(samples: crop.count)
                var a = fbank.compute(crop), b = fbank.compute(expected)
                applyCMVN(&a, frames: T0, bins: 80)
                applyCMVN(&b, frames: T0, bins: 80)
                var df: Float = 0
                for i in 0..<a.count { df = max(df, abs(a[i] - b[i])) }
                worstFeature = max(worstFeature, df)
                XCTAssertLessThanOrEqual(df, 1e-3, "\(p) crop @\(offset): fbank + CMVN max abs diff \(df)")
                XCTAssertLessThanOrEqual(ds, 1e-4, "\(p) crop @\(offset): samples max abs diff \(ds)")
            }
        }
        print("seek crops vs whole-file stretch: samples max abs diff \(worstSample), fbank + CMVN \(worstFeature)")
    }

    /// Through the loader: cropped utterances of long files (decoded by seeking) have the features of the
    /// same stretch of the whole-file decode (fbank + CMVN over the crop, within 1e-3).
    func testLoaderCropsOfLongFilesMatchWholeFileStretch() throws {
        let dir = try makeTempDir(self)
        var entries = [Manifest.Entry]()
        for (i, (rate, format)) in [(22_050, AudioWriter.Format.flac16), (44_100, .wav16), (16_000, .wav16)]
            .enumerated()
        {
            let name = "long\(i).\(format == .flac16 ? "flac" : "wav")"
            try AudioWriter.write(
                path: dir.appendingPathComponent(name).path,
                samples: broadband(rate: rate, seconds: 12, channels: 1 + i % 2, seed: UInt64(i + 3)),
                sampleRate: rate, channels: 1 + i % 2, format: format)
            entries.append(
                .init(
                    path: name,
                    samples: try AudioDecoder.info(path: dir.appendingPathComponent(name).path).resampledLength))
        }
        let m = Manifest(root: dir.path, entries: entries)
        let order = try DataOrder(
            lengths: entries.map(\.samples), config: DataOrderConfig(seed: 3, maxSamples: 40_000, maxFrames: 250),
            encoderLength: { $0 / 2 })
        let plan = order.plan(epoch: 0, microBatchesPerStep: 1)
        let loader = DataLoader(
            manifest: m, batches: plan.batches,
            options: {
                var o = LoaderOptions()
                o.workers = 2
                return o
            }())
        let wholes = try (0..<entries.count).map { try AudioDecoder.load(path: m.fullPath($0)) }
        let fbank = KaldiFbank()
        var checked = 0, worst: Float = 0
        while let b = try loader.nextIfAny() {
            for k in 0..<b.batchSize {
                let u = b.utterances[k], off = b.offsets[k], T0 = b.frames[k]
                let stretch = Array(wholes[u][off..<(off + 40_000)])
                var f = fbank.compute(stretch)
                applyCMVN(&f, frames: T0, bins: 80)
                for t in 0..<T0 {
                    for j in 0..<80 {
                        worst = max(worst, abs(b.features[(k * b.maxFrames + t) * 80 + j] - f[t * 80 + j]))
                    }
                }
                XCTAssertGreaterThan(off, 0, "a crop away from the start")
                checked += 1
            }
        }
        print("loader crops of long files: \(checked) utterances, fbank + CMVN max abs diff \(worst)")
        XCTAssertEqual(checked, entries.count)
        XCTAssertLessThanOrEqual(worst, 1e-3)
    }

    /// Header-only and decoding prepare agree on good files; the manifests do not depend on the number of
    /// threads, nor on how files are shared between ranks (each share checked separately, carried as
    /// bytes, merged — what `w2vbert prepare` does under mpirun).
    func testPrepareIdenticalForJobsAndShares() throws {
        let dir = try makeTempDir(self)
        for i in 0..<23 {
            let rate = [16_000, 22_050, 44_100, 48_000, 8_000][i % 5]
            try FileManager.default.createDirectory(
                at: dir.appendingPathComponent("s\(i % 4)"), withIntermediateDirectories: true)
            try AudioWriter.write(
                path: dir.appendingPathComponent("s\(i % 4)/f\(i).\(i % 3 == 0 ? "flac" : "wav")").path,
                samples: broadband(rate: rate, seconds: 0.3 + 0.1 * Double(i), channels: 1 + i % 2, seed: UInt64(i)),
                sampleRate: rate, channels: 1 + i % 2, format: i % 3 == 0 ? .flac16 : .wav16)
        }
        try "not audio".write(to: dir.appendingPathComponent("s1/bad.wav"), atomically: true, encoding: .utf8)
        var prep = CorpusPreparer()
        prep.validPercent = 20
        let one = try prep.prepare(root: dir.path)
        XCTAssertEqual(one.scanned, 24)
        XCTAssertEqual(one.skipped.count, 3, "\(one.skipped)")  // bad.wav, and the two files < 0.5 s
        var verify = prep
        verify.verify = true
        let decoded = try verify.prepare(root: dir.path)
        XCTAssertEqual(decoded.train.encoded(), one.train.encoded())
        XCTAssertEqual(decoded.valid.encoded(), one.valid.encoded())
        var three = prep
        three.jobs = 3
        let threaded = try three.prepare(root: dir.path)
        XCTAssertEqual(threaded.train.encoded(), one.train.encoded())
        XCTAssertEqual(threaded.valid.encoded(), one.valid.encoded())
        XCTAssertEqual(threaded.skipped, one.skipped)
        for world in [2, 3] {
            let root = CorpusPreparer.absoluteRoot(dir.path)
            let found = try prep.scan(root: root)
            let files = found.files
            var all = [CorpusPreparer.Check](repeating: .success([-1]), count: files.count)
            for r in 0..<world {
                let idx = Array(stride(from: r, to: files.count, by: world))
                let bytes = CorpusPreparer.encodeChecks(three.checkAll(root: root, files: files, indices: idx))
                for (k, c) in try CorpusPreparer.decodeChecks(bytes, paths: idx.map { files[$0] }).enumerated() {
                    all[idx[k]] = c
                }
            }
            let merged = prep.assemble(root: root, scan: found, checks: all)
            XCTAssertEqual(merged.train.encoded(), one.train.encoded(), "world \(world)")
            XCTAssertEqual(merged.valid.encoded(), one.valid.encoded(), "world \(world)")
            XCTAssertEqual(merged.skipped, one.skipped, "world \(world)")
        }
        XCTAssertThrowsError(try CorpusPreparer.decodeChecks([0, 1, 2], paths: ["a"]))
    }
}

func gcdTest(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcdTest(b, a % b) }
