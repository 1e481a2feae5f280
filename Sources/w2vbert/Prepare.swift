import ArgumentParser
import Audio
import Distributed
import Foundation
import Tensor
import Training

/// `w2vbert prepare AUDIO_DIR --out MANIFEST_DIR`: scan, check every file, write train.tsv / valid.tsv.
/// The work (and, under mpirun/srun, the sharing between ranks) is `CorpusPreparer.prepare(root:out:communicator:)`
/// in the Training module; this command parses the options and prints.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Scan a folder of audio (or series, or tokens) into fairseq-style train.tsv / valid.tsv manifests.",
        discussion: """
            Each file's 16 kHz length comes from its header (libsndfile's frame count n and rate R: n at \
            16 kHz, else ⌊n·16000/R⌋, exactly what decoding returns); MPEG files, whose header count is an \
            estimate, are decoded. Reading headers does not look at the samples: only --verify decodes every \
            file, catching corrupt streams behind a good header and files holding non-finite samples (NaN, \
            infinity), which are broken (without --verify the trainer skips them when it meets them). \
            Unreadable, empty and too-short files are skipped and listed with their reason. Folder links are \
            followed; folders and files are told apart by device and inode, so a link back up the tree is \
            reported once and not followed, and a folder or file reached by several paths (symbolic or hard \
            links) is walked or listed once, under the first of its paths in sorted order; each path left out \
            is printed, and the summary counts them. The valid split is a deterministic function of --seed. \
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

    @Option(
        name: .long,
        help: """
            What the files are: audio (default), series (.npy [T, C] or .csv with a header; lengths in steps) or \
            tokens (FASTA .fasta/.fa/.fna, one sequence per record; or text, one token per whitespace-separated \
            field; lengths in tokens). Recorded on the manifests' first line.
            """)
    var kind: String = "audio"

    @Option(
        name: .long, parsing: .upToNextOption, help: "File extensions to include (case-insensitive; default by --kind)."
    )
    var extensions: [String] = []

    @Option(name: .long, help: "series: the CSV columns to read, by name, comma-separated (default: all).")
    var columns: String?

    @Option(
        name: .long,
        help: """
            tokens: the vocabulary (one token per line); a token outside it skips the file. Default: the training \
            split's tokens, written to OUT/vocab.txt.
            """)
    var vocab: String?

    @Option(name: .long, help: "series and tokens: sequences shorter than this many steps or tokens are skipped.")
    var minLength: Int = 16

    @Option(
        name: .long,
        help: """
            tokens: cut every sequence (a FASTA record, a text file) into windows of this many tokens, one manifest \
            row each (FILE[#i]@START+LENGTH; a last window shorter than --min-length is dropped).
            """)
    var window: Int?

    @Option(name: .long, help: "series: the sampling rate in Hz, recorded in the manifests and the run.")
    var rate: Double?

    @Option(name: .long, help: "Files shorter than this many seconds (16 kHz length) are skipped.")
    var minSeconds: Double = 0.5

    @Option(
        name: .long,
        help: """
            Resampling for decoded files (--verify, MPEG): polyphase (default), or libsamplerate's best, medium \
            or fastest.
            """)
    var quality: String = "polyphase"

    @Flag(
        name: .long,
        help: """
            Decode every file (slow: ~90 files/s per thread on the default corpus) instead of reading headers; \
            only this finds corrupt streams and non-finite samples.
            """)
    var verify = false

    @Option(name: .long, help: "Threads checking files (per rank).")
    var jobs: Int = 1

    func validate() throws {
        if !(0...100).contains(validPercent) { throw ValidationError("--valid-percent must be within 0...100") }
        if minSeconds < 0 { throw ValidationError("--min-seconds must be ≥ 0") }
        if ResampleQuality(rawValue: quality) == nil {
            throw ValidationError("--quality must be polyphase, best, medium or fastest")
        }
        guard let k = SequenceKind(rawValue: kind) else {
            throw ValidationError("--kind must be audio, series or tokens, got '\(kind)'")
        }
        if k != .series && columns != nil { throw ValidationError("--columns is for --kind series") }
        if k != .tokens && vocab != nil { throw ValidationError("--vocab is for --kind tokens") }
        if minLength < 1 { throw ValidationError("--min-length must be ≥ 1") }
        if k != .tokens && window != nil { throw ValidationError("--window is for --kind tokens") }
        if let w = window, w < 1 { throw ValidationError("--window must be ≥ 1") }
        if k != .series && rate != nil { throw ValidationError("--rate is for --kind series") }
        if let r = rate, !(r > 0 && r.isFinite) { throw ValidationError("--rate must be > 0") }
        if jobs < 1 { throw ValidationError("--jobs must be ≥ 1") }
    }

    func run() throws {
        let comm: Communicator
        do { comm = try makeCommunicator() } catch {
            AudioCommand.printError("error: cannot start MPI: \(error)")
            throw ExitCode(1)
        }
        defer { if let mpi = comm as? MPICommunicator { mpi.finalize() } }
        try AudioCommand.reportingErrors {
            var p = preparer
            if let vocab { p.vocabulary = try TokenVocabulary.read(path: vocab) }
            try prepare(comm, p)
        }
    }

    var preparer: CorpusPreparer {
        var prep = CorpusPreparer()
        prep.kind = SequenceKind(rawValue: kind)!
        let defaults: [SequenceKind: [String]] = [
            .audio: prep.extensions, .series: SequenceFiles.seriesExtensions, .tokens: SequenceFiles.tokenExtensions,
        ]
        prep.extensions = (extensions.isEmpty ? defaults[prep.kind]! : extensions)
            .map { $0.hasPrefix(".") ? String($0.dropFirst()) : $0 }
        prep.columns = columns.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        prep.minLength = minLength
        prep.window = window ?? 0
        prep.rate = rate ?? 0
        prep.minSeconds = minSeconds
        prep.validPercent = validPercent
        prep.seed = seed
        prep.quality = ResampleQuality(rawValue: quality)!
        prep.verify = verify
        prep.jobs = jobs
        return prep
    }

    func prepare(_ comm: Communicator, _ preparer: CorpusPreparer) throws {
        let t0 = monotonicSeconds()
        let workers = "\(comm.size) rank(s) × \(jobs) thread(s)"
        let scanned = { (scan: CorpusScan, seconds: Double) in
            let root = CorpusPreparer.absoluteRoot(audioDir)
            AudioCommand.printError(
                "prepare: \(scan.files.count) \(kind) files under \(root) (scanned in "
                    + String(format: "%.1f s); ", seconds)
                    + "\(verify ? "decoding" : "reading headers") on \(workers)")
            for d in scan.duplicates { AudioCommand.printError("prepare: \(d)") }
        }
        let clock = ProgressClock(start: monotonicSeconds(), ranks: comm.size)
        let result: CorpusPreparer.Result?
        do {
            result = try preparer.prepare(
                root: audioDir, out: out, communicator: comm, scanned: scanned,
                progress: { @Sendable done, total in clock.tick(done, total) })
        } catch is PrepareFailedOnRankZero {
            throw ExitCode(1)  // rank 0 prints the one line
        }
        guard let r = result else { return }
        let usable = r.train.count + r.valid.count
        let dt = monotonicSeconds() - t0
        print(
            "prepare: \(r.scanned) \(kind) files under \(r.train.root) in \(String(format: "%.1f", dt)) s "
                + "(\(String(format: "%.0f", Double(r.scanned) / max(dt, 1e-9))) files/s, "
                + "\(verify ? "decoded" : "headers"), \(workers))")
        if preparer.kind == .audio {
            print(
                String(
                    format: "  usable: %d files, %.3f hours (train %d files %.3f h, valid %d files %.3f h)",
                    usable, r.hours, r.train.count, r.train.hours, r.valid.count, r.valid.hours))
        } else {
            let unit = preparer.kind == .series ? "steps" : "tokens"
            print(
                "  usable: \(usable) sequences, \(r.train.totalSamples + r.valid.totalSamples) \(unit) (train "
                    + "\(r.train.count) sequences \(r.train.totalSamples) \(unit), valid \(r.valid.count) sequences "
                    + "\(r.valid.totalSamples) \(unit))"
                    + (preparer.kind == .series ? ", \(r.train.attributes["channels"] ?? "?") channels" : ""))
        }
        print("  skipped: \(r.skipped.count)")
        for s in r.skipped { print("    \(s.path): \(s.reason)") }
        let folders = r.duplicates.filter { $0.kind != .file }.count
        print(
            "  duplicates skipped: \(r.duplicates.count - folders) file(s) and \(folders) folder(s) "
                + "reached again by another path (each listed or walked once)")
        print(
            "  wrote \(out)/train.tsv and \(out)/valid.tsv"
                + (r.vocabulary.map { " and \(out)/vocab.txt (\($0.count) tokens)" } ?? "")
        )
        if usable == 0 { throw AudioError(.empty, path: audioDir, "no usable \(kind) files") }
    }
}

/// Progress lines on stderr at most every 2 s: files checked, rate, ETA (rank 0's share under MPI).
final class ProgressClock: @unchecked Sendable {
    let start: Double
    let ranks: Int
    var last: Double
    init(start: Double, ranks: Int) {
        self.start = start
        self.ranks = ranks
        last = start
    }

    /// Called under the preparer's lock.
    func tick(_ done: Int, _ total: Int) {
        let now = monotonicSeconds()
        guard now - last >= 2 || done == total else { return }
        last = now
        let rate = Double(done) / max(now - start, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let share = ranks > 1 ? " (rank 0's share of \(ranks))" : ""
        AudioCommand.printError(
            String(
                format: "prepare: %d/%d files checked%@, %.0f files/s, ETA %.0f s",
                done, total, share, rate, eta))
    }
}
