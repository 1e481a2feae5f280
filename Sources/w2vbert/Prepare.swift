import ArgumentParser
import Audio
import Foundation

/// `w2vbert prepare AUDIO_DIR --out MANIFEST_DIR`: scan, check every file, write train.tsv / valid.tsv.
struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Scan a folder of audio into fairseq-style train.tsv / valid.tsv manifests (16 kHz sample counts).",
        discussion: """
            Every file is opened and decoded (libsndfile), averaged to mono and resampled to 16 kHz; its \
            16 kHz length goes into the manifest. Unreadable, empty and too-short files are skipped and \
            listed with their reason. The valid split is a deterministic function of --seed.
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

    @Option(name: .long, help: "Files shorter than this many seconds (after decoding) are skipped.")
    var minSeconds: Double = 0.5

    @Option(name: .long, help: "Resampling quality: best, medium or fastest.")
    var quality: String = "medium"

    func validate() throws {
        if !(0...100).contains(validPercent) { throw ValidationError("--valid-percent must be within 0...100") }
        if minSeconds < 0 { throw ValidationError("--min-seconds must be ≥ 0") }
        if ResampleQuality(rawValue: quality) == nil { throw ValidationError("--quality must be best, medium or fastest") }
        if extensions.isEmpty { throw ValidationError("--extensions needs at least one extension") }
    }

    func run() throws {
        try AudioCommand.reportingErrors {
            var prep = CorpusPreparer()
            prep.extensions = extensions.map { $0.hasPrefix(".") ? String($0.dropFirst()) : $0 }
            prep.minSeconds = minSeconds
            prep.validPercent = validPercent
            prep.seed = seed
            prep.quality = ResampleQuality(rawValue: quality)!
            let t0 = Date()
            let r = try prep.prepare(root: audioDir) { i, n in
                if i % 200 == 0 || i == n { AudioCommand.printError("prepare: \(i)/\(n) files checked") }
            }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try r.train.write(to: out + "/train.tsv")
            try r.valid.write(to: out + "/valid.tsv")
            let usable = r.train.count + r.valid.count
            print("prepare: \(r.scanned) audio files under \(r.train.root) in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
            print(String(format: "  usable: %d files, %.3f hours (train %d files %.3f h, valid %d files %.3f h)",
                         usable, r.hours, r.train.count, r.train.hours, r.valid.count, r.valid.hours))
            print("  skipped: \(r.skipped.count)")
            for s in r.skipped { print("    \(s.path): \(s.reason)") }
            print("  wrote \(out)/train.tsv and \(out)/valid.tsv")
            if usable == 0 { throw AudioError(.empty, path: audioDir, "no usable audio files") }
        }
    }
}
