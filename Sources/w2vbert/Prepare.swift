import ArgumentParser
import Audio
import Distributed
import Foundation
import Tensor

/// `w2vbert prepare AUDIO_DIR --out MANIFEST_DIR`: scan, check every file, write train.tsv / valid.tsv.
/// Under mpirun/srun every rank checks a share of the files (i ≡ rank mod size) and rank 0 writes.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Scan a folder of audio into fairseq-style train.tsv / valid.tsv manifests (16 kHz sample counts).",
        discussion: """
            Each file's 16 kHz length comes from its header (libsndfile's frame count n and rate R: n at \
            16 kHz, else ⌊n·16000/R⌋, exactly what decoding returns); MPEG files, whose header count is an \
            estimate, are decoded. --verify decodes every file, catching corrupt streams behind a good header \
            (without it the trainer skips them when it meets them). Unreadable, empty and too-short files are \
            skipped and listed with their reason. The valid split is a deterministic function of --seed. \
            --jobs threads check files; under mpirun/srun each rank checks a share and rank 0 writes the \
            manifests, which are byte-identical for any number of jobs or ranks.
            """)

    @Argument(help: "Folder scanned recursively for audio files.")
    var audioDir: String

    @Option(name: .long, help: "Output folder for train.tsv and valid.tsv (created if missing).")
    var out: String

    @Option(name: .long, help: "Percent of the usable files held out for valid.tsv (0-100).")
    var validPercent: Double = 2

    @Option(name: .long, help: "Seed of the train/valid split.")
    var seed: UInt64 = 1

    @Option(name: .long, parsing: .upToNextOption, help: "File extensions to include (case-insensitive).")
    var extensions: [String] = CorpusPreparer().extensions

    @Option(name: .long, help: "Files shorter than this many seconds (16 kHz length) are skipped.")
    var minSeconds: Double = 0.5

    @Option(name: .long, help: "Resampling for decoded files (--verify, MPEG): polyphase (default), or libsamplerate's best, medium or fastest.")
    var quality: String = "polyphase"

    @Flag(name: .long, help: "Decode every file (slow: ~90 files/s per thread on the default corpus) instead of reading headers.")
    var verify = false

    @Option(name: .long, help: "Threads checking files (per rank).")
    var jobs: Int = 1

    func validate() throws {
        if !(0...100).contains(validPercent) { throw ValidationError("--valid-percent must be within 0...100") }
        if minSeconds < 0 { throw ValidationError("--min-seconds must be ≥ 0") }
        if ResampleQuality(rawValue: quality) == nil { throw ValidationError("--quality must be polyphase, best, medium or fastest") }
        if extensions.isEmpty { throw ValidationError("--extensions needs at least one extension") }
        if jobs < 1 { throw ValidationError("--jobs must be ≥ 1") }
    }

    func run() throws {
        let comm: Communicator
        do { comm = try makeCommunicator() } catch {
            AudioCommand.printError("error: cannot start MPI: \(error)")
            throw ExitCode(1)
        }
        defer { if let mpi = comm as? MPICommunicator { mpi.finalize() } }
        try AudioCommand.reportingErrors { try prepare(comm) }
    }

    func prepare(_ comm: Communicator) throws {
        var prep = CorpusPreparer()
        prep.extensions = extensions.map { $0.hasPrefix(".") ? String($0.dropFirst()) : $0 }
        prep.minSeconds = minSeconds
        prep.validPercent = validPercent
        prep.seed = seed
        prep.quality = ResampleQuality(rawValue: quality)!
        prep.verify = verify
        prep.jobs = jobs
        let root = CorpusPreparer.absoluteRoot(audioDir)
        let t0 = monotonicSeconds()
        let isRoot = comm.rank == 0

        // 1. Rank 0 scans; the sorted list (or the scan's error) goes to every rank.
        var files = [String]()
        var scanError: AudioError? = nil
        if isRoot {
            do { files = try prep.scan(root: root) } catch { scanError = error }
        }
        if comm.size > 1 {
            var payload = [UInt8]()
            if isRoot {
                if let e = scanError { payload = [1] + Array(e.message.utf8) } else { payload = [0] + Array(files.joined(separator: "\0").utf8) }
            }
            payload = try comm.broadcast(bytes: payload, root: 0)
            let body = String(decoding: payload.dropFirst(), as: UTF8.self)
            if payload.first == 1 { scanError = AudioError(.unreadable, path: root, body) }
            else if !isRoot { files = body.isEmpty ? [] : body.split(separator: "\0", omittingEmptySubsequences: false).map(String.init) }
        }
        if let e = scanError {
            if isRoot { throw e }
            throw ExitCode(1)   // rank 0 prints the one line
        }
        if isRoot {
            AudioCommand.printError("prepare: \(files.count) audio files under \(root) (scanned in \(String(format: "%.1f", monotonicSeconds() - t0)) s); "
                                    + "\(verify ? "decoding" : "reading headers") on \(comm.size) rank(s) × \(jobs) thread(s)")
        }

        // 2. This rank's share, on `jobs` threads; rank 0 reports its progress.
        let mine = Array(stride(from: comm.rank, to: files.count, by: comm.size))
        let clock = ProgressClock(start: monotonicSeconds(), ranks: comm.size)
        var report: (@Sendable (Int, Int) -> Void)? = nil
        if isRoot { report = { @Sendable done, total in clock.tick(done, total) } }
        let checks = prep.checkAll(root: root, files: files, indices: mine, progress: report)

        // 3. Everyone's results to rank 0 (one broadcast per rank, sizes first), then rank 0 splits and writes.
        var all = [CorpusPreparer.Check](repeating: .success(0), count: files.count)
        if comm.size == 1 {
            all = checks
        } else {
            var received = [[UInt8]]()
            let mineBytes = CorpusPreparer.encodeChecks(checks)
            for r in 0..<comm.size {
                let b = try comm.broadcast(bytes: r == comm.rank ? mineBytes : [], root: r)
                if isRoot { received.append(b) }
            }
            if !isRoot { return }
            for r in 0..<comm.size {
                let idx = Array(stride(from: r, to: files.count, by: comm.size))
                let got = try CorpusPreparer.decodeChecks(received[r], paths: idx.map { files[$0] })
                for (k, i) in idx.enumerated() { all[i] = got[k] }
            }
        }
        guard isRoot else { return }
        let r = prep.assemble(root: root, files: files, checks: all)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try r.train.write(to: out + "/train.tsv")
        try r.valid.write(to: out + "/valid.tsv")
        let usable = r.train.count + r.valid.count
        let dt = monotonicSeconds() - t0
        print("prepare: \(r.scanned) audio files under \(r.train.root) in \(String(format: "%.1f", dt)) s "
              + "(\(String(format: "%.0f", Double(r.scanned) / max(dt, 1e-9))) files/s, \(verify ? "decoded" : "headers"), \(comm.size) rank(s) × \(jobs) thread(s))")
        print(String(format: "  usable: %d files, %.3f hours (train %d files %.3f h, valid %d files %.3f h)",
                     usable, r.hours, r.train.count, r.train.hours, r.valid.count, r.valid.hours))
        print("  skipped: \(r.skipped.count)")
        for s in r.skipped { print("    \(s.path): \(s.reason)") }
        print("  wrote \(out)/train.tsv and \(out)/valid.tsv")
        if usable == 0 { throw AudioError(.empty, path: audioDir, "no usable audio files") }
    }
}

/// Progress lines on stderr at most every 2 s: files checked, rate, ETA (rank 0's share under MPI).
final class ProgressClock: @unchecked Sendable {
    let start: Double
    let ranks: Int
    var last: Double
    init(start: Double, ranks: Int) { self.start = start; self.ranks = ranks; last = start }

    /// Called under the preparer's lock.
    func tick(_ done: Int, _ total: Int) {
        let now = monotonicSeconds()
        guard now - last >= 2 || done == total else { return }
        last = now
        let rate = Double(done) / max(now - start, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let share = ranks > 1 ? " (rank 0's share of \(ranks))" : ""
        AudioCommand.printError(String(format: "prepare: %d/%d files checked%@, %.0f files/s, ETA %.0f s", done, total, share, rate, eta))
    }
}
