import ArgumentParser
import Foundation
import Tensor
import W2VBert

/// `w2vbert bench kernels`: raw matrix-product throughput, and forward + backward of Linear, LayerNorm,
/// attention and the Conformer conv module at a preset's sizes against the time their products alone take.
struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the kernels at a preset's sizes (one thread by default); one JSON line per measurement.")

    @Option(help: "Preset whose sizes to use (tiny, small, base, xl, or the Hugging Face family).") var preset = "base"
    @Option(help: "Utterances per batch.") var batch = 8
    @Option(help: "Seconds of audio per utterance (T = seconds·25 frames after the feature encoder).")
    var seconds = 10.0
    @Option(help: "Threads (GEMMs and kernels split over the rank's pool).") var threads = 1
    @Option(
        help: ArgumentHelp(
            "Precision of the composite kernels' matrix products: fp32 or bf16 (the matmul peaks are printed "
                + "for both)."))
    var precision = "fp32"
    @Option(help: "Timed repeats per measurement (median reported).") var repeats = 5

    func validate() throws {
        do {
            _ = try Config.preset(preset)
        } catch {
            throw ValidationError("\(error)")
        }
        guard Precision(rawValue: precision) != nil else {
            throw ValidationError("--precision must be fp32 or bf16, not '\(precision)'")
        }
        guard batch > 0, seconds > 0.5, threads > 0, repeats > 0 else {
            throw ValidationError("batch, seconds, threads and repeats must be positive")
        }
    }

    func run() throws {
        let m = try Config.preset(preset).model
        let compute = Compute(precision: Precision(rawValue: precision)!, threads: threads)
        let bench = KernelBenchmark(
            d: m.dim, heads: m.heads, ffn: m.ffnDim, kernel: m.convKernel, batch: batch,
            t: Int(seconds * 25), compute: compute, repeats: repeats)
        bench.run(emit: { print($0) }, log: { FileHandle.standardError.write(Data("bench kernels: \($0)\n".utf8)) })
    }
}
