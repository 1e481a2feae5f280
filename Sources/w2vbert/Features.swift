import ArgumentParser
import Audio
import Foundation

/// `w2vbert features AUDIO --out OUT.npy`: decode, resample to 16 kHz, Kaldi fbank (SPEC §2), CMVN.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Compute 80-bin Kaldi log-mel features of one audio file and write them as float32 [T0, 80] .npy.")

    @Argument(help: "An audio file libsndfile reads (WAV, FLAC, Ogg/Vorbis, ...).")
    var audio: String

    @Option(name: .long, help: "Output .npy path.")
    var out: String

    @Flag(name: .long, help: "Skip per-utterance CMVN (write the raw log-mel energies).")
    var noCmvn = false

    @Option(name: .long, help: "Also write the 16 kHz mono samples the features were computed from (float32 .npy, in [-1, 1)).")
    var samplesOut: String?

    @Option(name: .long, help: "Resampling quality: best, medium or fastest.")
    var quality: String = "medium"

    func validate() throws {
        if ResampleQuality(rawValue: quality) == nil { throw ValidationError("--quality must be best, medium or fastest") }
    }

    func run() throws {
        try AudioCommand.reportingErrors {
            let samples = try AudioDecoder.load(path: audio, quality: ResampleQuality(rawValue: quality)!)
            let fbank = KaldiFbank()
            var feats = fbank.compute(samples)
            let T0 = fbank.numFrames(samples: samples.count)
            if !noCmvn { applyCMVN(&feats, frames: T0, bins: fbank.numBins) }
            try Npy.write(NpyArray(shape: [T0, fbank.numBins], data: feats), to: out)
            if let s = samplesOut { try Npy.write(NpyArray(shape: [samples.count], data: samples), to: s) }
            print("\(audio): \(samples.count) samples at 16 kHz (\(String(format: "%.2f", Double(samples.count) / 16000)) s) → \(out) [\(T0), \(fbank.numBins)]\(noCmvn ? "" : " CMVN")")
        }
    }
}
