import ArgumentParser
import Audio
import Foundation
import Training

/// `w2vbert features AUDIO --out OUT.npy`: decode, resample to 16 kHz, Kaldi fbank, CMVN.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Compute 80-bin Kaldi log-mel features of one audio file and write them as float32 [T0, 80] .npy.",
        discussion: """
            With --checkpoint of a series or tokens run, the file is of that kind and OUT holds what the run's \
            model reads: [T, C] normalised with the run's per-channel statistics (NaN where missing), or [T, 1] \
            token ids of the run's vocabulary.
            """)

    @Argument(help: "An audio file libsndfile reads (WAV, FLAC, Ogg/Vorbis, ...), or a file of the run's kind.")
    var audio: String

    @Option(help: "A run or checkpoint folder of data.kind series or tokens (see above).")
    var checkpoint: String?

    @Option(name: .long, help: "Output .npy path.")
    var out: String

    @Flag(name: .long, help: "Skip per-utterance CMVN (write the raw log-mel energies).")
    var noCmvn = false

    @Option(
        name: .long,
        help: "Also write the 16 kHz mono samples the features were computed from (float32 .npy, in [-1, 1)).")
    var samplesOut: String?

    @Option(name: .long, help: "Resampling: polyphase (default), or libsamplerate's best, medium or fastest.")
    var quality: String = "polyphase"

    @Option(
        name: .long,
        help: """
            Start of a stretch, in seconds (with --duration): only that stretch is decoded (seeking), as the \
            trainer does for crops.
            """
    )
    var offset: Double?

    @Option(name: .long, help: "Length of the stretch in seconds (default: to the end).")
    var duration: Double?

    func validate() throws {
        if ResampleQuality(rawValue: quality) == nil {
            throw ValidationError("--quality must be polyphase, best, medium or fastest")
        }
        if let o = offset, o < 0 { throw ValidationError("--offset must be ≥ 0") }
        if let d = duration, d <= 0 { throw ValidationError("--duration must be > 0") }
    }

    func run() throws {
        if let checkpoint, try sequenceFeatures(checkpoint) { return }
        try AudioCommand.reportingErrors {
            let q = ResampleQuality(rawValue: quality)!
            let samples: [Float]
            if offset != nil || duration != nil {
                let first = Int(((offset ?? 0) * 16_000).rounded())
                let end = duration.map { first + Int(($0 * 16_000).rounded()) } ?? Int.max / 1_000_000
                samples = try AudioDecoder.load(path: audio, range: first..<end, quality: q)
                if samples.isEmpty { throw AudioError(.tooShort, path: audio, "no audio at offset \(offset ?? 0) s") }
            } else {
                samples = try AudioDecoder.load(path: audio, quality: q)
            }
            let fbank = KaldiFbank()
            var feats = fbank.compute(samples)
            let T0 = fbank.numFrames(samples: samples.count)
            if !noCmvn { applyCMVN(&feats, frames: T0, bins: fbank.numBins) }
            try Npy.write(NpyArray(shape: [T0, fbank.numBins], data: feats), to: out)
            if let s = samplesOut { try Npy.write(NpyArray(shape: [samples.count], data: samples), to: s) }
            print(
                "\(audio): \(samples.count) samples at 16 kHz "
                    + "(\(String(format: "%.2f", Double(samples.count) / 16000)) s) → \(out) "
                    + "[\(T0), \(fbank.numBins)]\(noCmvn ? "" : " CMVN")"
            )
        }
    }

    /// A series or tokens file as the run of `checkpoint` reads it; false for an audio run.
    func sequenceFeatures(_ checkpoint: String) throws -> Bool {
        let folder = try checkpointFolder(checkpoint, overrides: [])
        let c = folder.config
        if c.data.kind == .audio { return false }
        try AudioCommand.reportingErrors {
            let e = Embedding(audio: [audio])
            let rows = try e.inputRows(folder)
            try Npy.write(NpyArray(shape: [rows.count / c.inputWidth, c.inputWidth], data: rows), to: out)
            print(
                "\(audio): \(rows.count / c.inputWidth) steps of \(c.data.kind.rawValue) → \(out) "
                    + "[\(rows.count / c.inputWidth), \(c.inputWidth)]"
            )
        }
        return true
    }
}
