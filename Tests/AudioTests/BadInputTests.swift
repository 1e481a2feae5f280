import Audio
import Foundation
import XCTest

final class BadInputTests: XCTestCase {
    /// A folder of real files written by libsndfile plus broken ones; prepare keeps the good ones and
    /// skips each broken one with its reason.
    func makeCorpus() throws -> URL {
        let dir = try makeTempDir(self)
        let fm = FileManager.default
        try fm.createDirectory(at: dir.appendingPathComponent("spk1/sub"), withIntermediateDirectories: true)
        try AudioWriter.write(
            path: dir.appendingPathComponent("spk1/a.wav").path, samples: speechLike(rate: 16000, seconds: 1.0),
            sampleRate: 16000)
        let st = speechLike(rate: 22050, seconds: 2.0)
        try AudioWriter.write(
            path: dir.appendingPathComponent("spk1/sub/b.FLAC").path,
            samples: zip(st, st.reversed()).flatMap { [$0, $1] },
            sampleRate: 22050, channels: 2, format: .flac16)
        try AudioWriter.write(
            path: dir.appendingPathComponent("c.wav").path, samples: speechLike(rate: 48000, seconds: 0.75),
            sampleRate: 48000)
        // corrupt: a real WAV whose RIFF/fmt header is overwritten with garbage
        let good = dir.appendingPathComponent("corrupt.wav")
        try AudioWriter.write(path: good.path, samples: speechLike(rate: 16000, seconds: 1.0), sampleRate: 16000)
        var bytes = try Data(contentsOf: good)
        for i in 0..<44 { bytes[i] = UInt8((i * 37 + 11) & 0xFF) }
        try bytes.write(to: good)
        // corrupt stream: a real FLAC with bytes flipped in the middle (libsndfile stops early, silently)
        let flac = dir.appendingPathComponent("spk1/corrupt.flac")
        try AudioWriter.write(
            path: flac.path, samples: sine(freq: 440, rate: 16000, seconds: 2), sampleRate: 16000, format: .flac16)
        var fb = try Data(contentsOf: flac)
        for i in (fb.count / 2)..<(fb.count / 2 + 2000) { fb[i] ^= 0x5A }
        try fb.write(to: flac)
        // truncated: a real WAV cut inside its header
        let wav = try Data(contentsOf: dir.appendingPathComponent("spk1/a.wav"))
        try wav.prefix(30).write(to: dir.appendingPathComponent("truncated.wav"))
        fm.createFile(atPath: dir.appendingPathComponent("empty.wav").path, contents: Data())
        try "this is a text file, not audio\n".write(
            to: dir.appendingPathComponent("notes.wav"), atomically: true, encoding: .utf8)
        try AudioWriter.write(
            path: dir.appendingPathComponent("short.wav").path, samples: speechLike(rate: 16000, seconds: 0.1),
            sampleRate: 16000)
        try "ignored".write(to: dir.appendingPathComponent("readme.txt"), atomically: true, encoding: .utf8)
        return dir
    }

    func testPrepareSkipsAndReports() throws {
        let dir = try makeCorpus()
        var prep = CorpusPreparer()
        prep.minSeconds = 0.5
        prep.validPercent = 34
        // Header-only (the default) sees a good header on the FLAC with a corrupt stream and keeps it
        // (the loader skips it at training time); everything else is caught from the header alone.
        let headers = try prep.prepare(root: dir.path)
        XCTAssertEqual(
            Set(headers.skipped.map(\.path)), ["corrupt.wav", "truncated.wav", "empty.wav", "notes.wav", "short.wav"])
        XCTAssertTrue((headers.train.entries + headers.valid.entries).contains { $0.path == "spk1/corrupt.flac" })
        prep.verify = true
        let r = try prep.prepare(root: dir.path)
        for s in r.skipped { print("skipped \(s.path): \(s.reason)") }
        XCTAssertEqual(r.scanned, 9)
        let skipped = Dictionary(uniqueKeysWithValues: r.skipped.map { ($0.path, $0.kind) })
        XCTAssertEqual(
            skipped,
            [
                "corrupt.wav": .unreadable, "spk1/corrupt.flac": .decode, "truncated.wav": .unreadable,
                "empty.wav": .empty, "notes.wav": .unreadable, "short.wav": .tooShort
            ])
        XCTAssertTrue(
            r.skipped.first { $0.path == "notes.wav" }!.reason.count > "unreadable: ".count, "libsndfile's message")
        let all = (r.train.entries + r.valid.entries).sorted { $0.path < $1.path }
        XCTAssertEqual(all.map(\.path), ["c.wav", "spk1/a.wav", "spk1/sub/b.FLAC"])
        XCTAssertEqual(all.map(\.samples), [12000, 16000, 32000])
        XCTAssertEqual(r.valid.count, 1)  // round(0.34 · 3)
        // deterministic split by seed; manifests round-trip through the TSV
        let again = try prep.prepare(root: dir.path)
        XCTAssertEqual(again.valid, r.valid)
        let path = dir.appendingPathComponent("train.tsv").path
        try r.train.write(to: path)
        XCTAssertEqual(try Manifest.read(path: path), r.train)
        XCTAssertEqual(
            try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first.map(String.init),
            r.train.root)
    }

    func testManifestParseErrorsNameLine() throws {
        let dir = try makeTempDir(self)
        let p = dir.appendingPathComponent("bad.tsv").path
        try "/root\na.wav\t100\nb.wav\tlots\n".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Manifest.read(path: p)) { e in XCTAssertTrue("\(e)".contains("line 3"), "\(e)") }
    }

    /// A manifest naming vanished files: each is reported with its path and counted, the utterance is
    /// dropped from its micro-batch, the loader continues; past max_bad_fraction it aborts clearly.
    func loaderRun(
        badFraction: Double, vanished: Int, batchesWanted: Int, workers: Int = 1
    ) throws -> (batches: [MicroBatch], error: Error?, reports: [String], stats: LoaderStats) {
        let dir = try makeTempDir(self)
        var entries = [Manifest.Entry]()
        for i in 0..<20 {
            let n = 16000 + 1600 * i
            let name = "u\(i).wav"
            try AudioWriter.write(
                path: dir.appendingPathComponent(name).path,
                samples: speechLike(rate: 16000, seconds: Double(n) / 16000, seed: Double(i)), sampleRate: 16000)
            entries.append(.init(path: name, samples: n))
        }
        for i in 0..<vanished { try FileManager.default.removeItem(at: dir.appendingPathComponent("u\(i * 3).wav")) }
        let manifest = Manifest(root: dir.path, entries: entries)
        let order = try DataOrder(
            lengths: entries.map(\.samples), config: DataOrderConfig(seed: 5, maxSamples: 40_000, maxFrames: 600),
            encoderLength: { ((($0 - 1) / 2) - 1) / 2 })
        final class Box: @unchecked Sendable {
            var lines = [String]()
            let lock = NSLock()
        }
        let box = Box()
        var opts = LoaderOptions()
        opts.maxBadFraction = badFraction
        opts.prefetch = 2
        opts.workers = workers
        opts.report = { s in
            box.lock.lock()
            box.lines.append(s)
            box.lock.unlock()
        }
        let loader = try DataLoader(manifest: manifest, order: order, sharding: Sharding(), options: opts)
        var out = [MicroBatch](), err: Error? = nil
        do { for _ in 0..<batchesWanted { out.append(try loader.next()) } } catch { err = error }
        let stats = loader.stats
        loader.stop()
        box.lock.lock()
        defer { box.lock.unlock() }
        return (out, err, box.lines, stats)
    }

    func testLoaderSkipsVanishedFilesAndContinues() throws {
        let (batches, error, reports, stats) = try loaderRun(badFraction: 0.25, vanished: 3, batchesWanted: 40)  // two epochs+
        XCTAssertNil(error)
        XCTAssertEqual(stats.badFiles, 3)
        XCTAssertEqual(reports.count, 3, "each bad file reported once: \(reports)")
        for i in [0, 3, 6] { XCTAssertTrue(reports.contains { $0.contains("u\(i).wav") }, "report names u\(i).wav") }
        var delivered = Set<String>()
        for b in batches {
            XCTAssertEqual(b.features.count, b.batchSize * b.maxFrames * 80)
            XCTAssertEqual(b.maxFrames, b.frames.max() ?? 0)
            for (k, p) in b.paths.enumerated() {
                delivered.insert((p as NSString).lastPathComponent)
                // CMVN'd rows: mean ≈ 0 over the true frames of bin 5, padding zero
                var s = 0.0
                for t in 0..<b.frames[k] { s += Double(b.features[(k * b.maxFrames + t) * 80 + 5]) }
                XCTAssertEqual(s / Double(b.frames[k]), 0, accuracy: 1e-3)
                for t in b.frames[k]..<b.maxFrames { XCTAssertEqual(b.features[(k * b.maxFrames + t) * 80 + 5], 0) }
            }
        }
        XCTAssertFalse(delivered.contains("u0.wav") || delivered.contains("u3.wav") || delivered.contains("u6.wav"))
        XCTAssertEqual(delivered.count, 17)
        let failedNames = Set(batches.flatMap(\.failed).map { ($0 as NSString).lastPathComponent })
        XCTAssertTrue(
            failedNames.isSubset(of: ["u0.wav", "u3.wav", "u6.wav"]) && !failedNames.isEmpty, "\(failedNames)")
        XCTAssertGreaterThan(batches.last!.epoch, 0, "ran into the next epoch")
        // three workers deliver the same micro-batches, in the same order
        let (b3, e3, _, s3) = try loaderRun(badFraction: 0.25, vanished: 3, batchesWanted: 40, workers: 3)
        XCTAssertNil(e3)
        XCTAssertEqual(s3.badFiles, 3)
        XCTAssertEqual(b3.map(\.index), batches.map(\.index))
        XCTAssertEqual(b3.map(\.utterances), batches.map(\.utterances))
        XCTAssertEqual(b3.map(\.features), batches.map(\.features))
        XCTAssertEqual(b3.map(\.resumeCursor), batches.map(\.resumeCursor))
    }

    /// A fixed list (validation): every planned utterance once, then nil.
    func testLoaderOverFixedList() throws {
        let dir = try makeTempDir(self)
        var entries = [Manifest.Entry]()
        for i in 0..<7 {
            try AudioWriter.write(
                path: dir.appendingPathComponent("v\(i).wav").path,
                samples: speechLike(rate: 16000, seconds: 1 + 0.1 * Double(i)), sampleRate: 16000)
            entries.append(.init(path: "v\(i).wav", samples: 16000 + 1600 * i))
        }
        let m = Manifest(root: dir.path, entries: entries)
        let order = try DataOrder(
            lengths: entries.map(\.samples), config: DataOrderConfig(seed: 1, maxSamples: 32000, maxFrames: 400),
            encoderLength: { $0 / 2 })
        let plan = order.plan(epoch: 0, microBatchesPerStep: 1)
        XCTAssertEqual(plan.usableBatches, plan.batches.count)
        let loader = DataLoader(
            manifest: m, batches: plan.batches,
            options: {
                var o = LoaderOptions()
                o.workers = 2
                return o
            }())
        var got = [MicroBatch]()
        while let b = try loader.nextIfAny() { got.append(b) }
        XCTAssertEqual(got.map(\.index), plan.batches.map(\.index))
        XCTAssertEqual(got.flatMap(\.utterances).sorted(), Array(0..<7))
        // the features of an utterance equal the fbank + CMVN of its file
        let b = got[0], k = 0
        let x = try AudioDecoder.load(path: m.fullPath(b.utterances[k]))
        var f = KaldiFbank().compute(x)
        applyCMVN(&f, frames: b.frames[k], bins: 80)
        XCTAssertEqual(Array(b.features[0..<(b.frames[k] * 80)]), f)
        XCTAssertNil(try loader.nextIfAny())
    }

    func testLoaderAbortsPastBadFraction() throws {
        // 20 files, W = 1, max_bad_fraction 0.1 → limit 2 bad files; 4 vanished → the 3rd aborts
        let (_, error, reports, _) = try loaderRun(badFraction: 0.1, vanished: 4, batchesWanted: 40)
        let e = try XCTUnwrap(error as? LoaderError)
        guard case let .tooManyBadFiles(count, limit, files) = e else { return XCTFail("\(e)") }
        XCTAssertEqual(count, 3)
        XCTAssertEqual(limit, 2, accuracy: 1e-9)
        XCTAssertEqual(files.count, 3)
        XCTAssertTrue("\(e)".contains("max_bad_fraction"))
        XCTAssertTrue("\(e)".contains("u0.wav") || "\(e)".contains("u3.wav"), "names the files: \(e)")
        XCTAssertEqual(reports.count, 3)
        // the same with three workers: the error still reaches the consumer
        let (_, e3, _, s3) = try loaderRun(badFraction: 0.1, vanished: 4, batchesWanted: 40, workers: 3)
        XCTAssertNotNil(e3 as? LoaderError)
        XCTAssertGreaterThanOrEqual(s3.badFiles, 3)  // concurrent workers may meet a 4th before stopping
    }

    /// prepare follows symbolic links to folders (launch/prepare-corpus.sh links the Czech folders).
    func testPrepareFollowsFolderSymlinks() throws {
        let real = try makeTempDir(self), root = try makeTempDir(self)
        try AudioWriter.write(
            path: real.appendingPathComponent("x.wav").path, samples: speechLike(rate: 16000, seconds: 1),
            sampleRate: 16000)
        try FileManager.default.createSymbolicLink(
            atPath: root.appendingPathComponent("level1").path, withDestinationPath: real.path)
        try FileManager.default.createSymbolicLink(
            atPath: root.appendingPathComponent("loop").path, withDestinationPath: root.path)
        var prep = CorpusPreparer()
        prep.validPercent = 0
        let r = try prep.prepare(root: root.path)
        XCTAssertEqual(r.train.entries, [Manifest.Entry(path: "level1/x.wav", samples: 16000)])
        XCTAssertEqual(r.valid.count, 0)
        XCTAssertEqual(r.duplicates, [CorpusScan.Duplicate(kind: .loop, path: "loop", sameAs: ".")])
    }
}
