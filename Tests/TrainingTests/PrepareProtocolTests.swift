import Audio
import Distributed
import Foundation
import Training
import XCTest

/// `CorpusPreparer.prepare(root:out:communicator:)`, the rank protocol of `w2vbert prepare`, called as a
/// library: one process, and three ranks as threads (ThreadCommunicator). PrepareUnderMPITests runs the
/// command under real mpirun.
final class PrepareProtocolTests: XCTestCase {
    let fm = FileManager.default

    func temp(_ tag: String) -> URL {
        let url = fm.temporaryDirectory.appendingPathComponent("w2v-prep-\(tag)-\(UUID().uuidString.prefix(8))")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// 17 files in three folders at three rates, a hard link, a folder link loop, one file that is not audio.
    func makeCorpus() throws -> URL {
        let root = temp("corpus")
        for i in 0..<17 {
            let rate = [16_000, 22_050, 44_100][i % 3]
            let folder = root.appendingPathComponent("s\(i % 3)")
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            let x = (0..<(rate * (6 + i) / 10)).map { Float(0.3 * sin(Double($0) * 0.05 * Double(1 + i % 4))) }
            try AudioWriter.write(path: folder.appendingPathComponent("f\(i).wav").path, samples: x, sampleRate: rate)
        }
        try fm.linkItem(
            atPath: root.appendingPathComponent("s0/f0.wav").path,
            toPath: root.appendingPathComponent("s1/a-link.wav").path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("s2/back").path, withDestinationPath: "..")
        try "not audio".write(to: root.appendingPathComponent("s2/bad.wav"), atomically: true, encoding: .utf8)
        return root
    }

    func read(_ url: URL) throws -> String { try String(contentsOf: url, encoding: .utf8) }

    /// One process: the result equals the in-process `prepare(root:)`, the manifests are written, the
    /// callbacks see the scan (with its duplicates) and every file's progress.
    func testSingleProcessWritesTheManifestsOfTheOneProcessPreparer() throws {
        let root = try makeCorpus()
        let out = temp("out")
        var prep = CorpusPreparer()
        prep.validPercent = 25
        final class Seen: @unchecked Sendable {
            var scans = [CorpusScan]()
            var lastProgress = (0, 0)
        }
        let seen = Seen()
        let got = try prep.prepare(
            root: root.path, out: out.path, communicator: SingleProcessCommunicator(),
            scanned: { scan, _ in seen.scans.append(scan) },
            progress: { @Sendable done, total in seen.lastProgress = (done, total) })
        let r = try XCTUnwrap(got)
        let reference = try prep.prepare(root: root.path)
        XCTAssertEqual(r.train, reference.train)
        XCTAssertEqual(r.valid, reference.valid)
        XCTAssertEqual(r.skipped, reference.skipped)
        XCTAssertEqual(r.scanned, 18)
        XCTAssertEqual(r.skipped.map(\.path), ["s2/bad.wav"])
        XCTAssertEqual(
            r.duplicates,
            [
                .init(kind: .loop, path: "s2/back", sameAs: "."),
                .init(kind: .file, path: "s1/a-link.wav", sameAs: "s0/f0.wav")
            ])
        XCTAssertEqual(r.train.count + r.valid.count, 17)
        XCTAssertEqual(r.valid.count, 4)  // round(0.25 · 17)
        XCTAssertEqual(seen.scans.map(\.files.count), [18])
        XCTAssertEqual(seen.scans.first?.duplicates, r.duplicates)
        XCTAssertEqual(seen.lastProgress.0, 18)
        XCTAssertEqual(seen.lastProgress.1, 18)
        XCTAssertEqual(try read(out.appendingPathComponent("train.tsv")), r.train.encoded())
        XCTAssertEqual(try read(out.appendingPathComponent("valid.tsv")), r.valid.encoded())
    }

    /// Three ranks (threads), two checking threads each: rank 0 writes the same manifests as one process
    /// and is the only rank to report; the others return nil.
    func testThreeRanksMergeToTheSameManifests() throws {
        let root = try makeCorpus()
        var prep = CorpusPreparer()
        prep.validPercent = 25
        let one = temp("one")
        let single = SingleProcessCommunicator()
        let reference = try XCTUnwrap(prep.prepare(root: root.path, out: one.path, communicator: single))
        prep.jobs = 2
        let out = temp("three")
        final class Calls: @unchecked Sendable {
            let lock = NSLock()
            var scannedOn = [Int]()
            var progressTotals = Set<Int>()
            func scanned(_ rank: Int) {
                lock.lock()
                scannedOn.append(rank)
                lock.unlock()
            }
            func progress(_ total: Int) {
                lock.lock()
                progressTotals.insert(total)
                lock.unlock()
            }
        }
        let calls = Calls()
        let preparer = prep
        let results = ThreadGroup(size: 3).run { comm -> Swift.Result<CorpusPreparer.Result?, Error> in
            Swift.Result {
                try preparer.prepare(
                    root: root.path, out: out.path, communicator: comm,
                    scanned: { _, _ in calls.scanned(comm.rank) },
                    progress: { @Sendable _, total in calls.progress(total) })
            }
        }
        let onRoot = try XCTUnwrap(try results[0].get())
        XCTAssertNil(try results[1].get())
        XCTAssertNil(try results[2].get())
        XCTAssertEqual(onRoot.train, reference.train)
        XCTAssertEqual(onRoot.valid, reference.valid)
        XCTAssertEqual(onRoot.skipped, reference.skipped)
        XCTAssertEqual(onRoot.duplicates, reference.duplicates)
        XCTAssertEqual(calls.scannedOn, [0])
        XCTAssertEqual(calls.progressTotals, [6], "rank 0's share: files 0, 3, ..., 15 of 18")
        for name in ["train.tsv", "valid.tsv"] {
            XCTAssertEqual(try read(out.appendingPathComponent(name)), try read(one.appendingPathComponent(name)), name)
        }
    }

    /// A root that is not a folder: rank 0 throws the scan's error naming it, the other ranks
    /// `PrepareFailedOnRankZero` with the same message; nothing is written.
    func testScanErrorReachesEveryRank() throws {
        let missing = temp("missing").path
        let out = temp("out")
        let results = ThreadGroup(size: 3).run { comm -> Error? in
            do {
                _ = try CorpusPreparer().prepare(root: missing, out: out.path, communicator: comm)
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(results[0] as? AudioError, AudioError(.unreadable, path: missing, "not a folder"))
        for r in 1..<3 {
            let seen = results[r].map { "\($0)" } ?? "no error"
            let e = try XCTUnwrap(results[r] as? PrepareFailedOnRankZero, "rank \(r): \(seen)")
            XCTAssertEqual(e.message, "not a folder")
        }
        XCTAssertFalse(fm.fileExists(atPath: out.path))
    }

    /// The test communicator itself: broadcast, all-reduce (sum, max, min), all-gather over three threads.
    func testThreadCommunicatorCollectives() throws {
        let results = ThreadGroup(size: 3).run { comm -> [Double] in
            do {
                let text = try comm.broadcast(bytes: comm.rank == 1 ? Array("from 1".utf8) : [], root: 1)
                var sum: [Double] = [Double(comm.rank), 1]
                try comm.allReduce(&sum)
                var high: [Int64] = [Int64(10 * comm.rank)]
                try comm.allReduce(&high, op: .max)
                var low: [Float] = [Float(5 - comm.rank)]
                try comm.allReduce(&low, op: .min)
                var gathered = [Int64](repeating: -1, count: 6)
                let mine: [Int64] = [Int64(comm.rank), Int64(comm.rank * comm.rank)]
                try mine.withUnsafeBytes { s in
                    try gathered.withUnsafeMutableBytes { r in
                        try comm.allGather(send: s.baseAddress!, recv: r.baseAddress!, count: 2, type: .int64)
                    }
                }
                try comm.barrier()
                let ok = String(decoding: text, as: UTF8.self) == "from 1" ? 1.0 : 0.0
                return [ok] + sum + [Double(high[0]), Double(low[0])] + gathered.map(Double.init)
            } catch {
                return []
            }
        }
        for r in results { XCTAssertEqual(r, [1, 3, 3, 20, 3, 0, 0, 1, 1, 2, 4]) }
    }
}
