import ArgumentParser
import W2VBert
import Training

/// `w2vbert bench model`: full training steps (forward, backward, AdamW) of a preset on synthetic features.
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Time full training steps of a preset on synthetic features; prints one JSON line.")

    @Option(help: "Preset: tiny, small, base, xl.") var preset = "small"
    @Option(help: "Utterances per micro-batch.") var batch = 8
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Option(help: "Threads in the process (overrides compute.threads; default: compute.threads, else its CPUs).")
    var threads: Int?
    @Option(name: .customLong("set"), help: "Config override section.key=value (repeatable).")
    var overrides: [String] = []

    func validate() throws {
        guard batch > 0, seconds >= 1, steps > 0 else {
            throw ValidationError("--batch and --steps must be ≥ 1, --seconds ≥ 1")
        }
    }

    func run() throws {
        let config: Config
        do {
            config = try Config.load(preset: preset, overrides: overrides)
        } catch {
            throw UsageError("\(error)")
        }
        try requirePretraining(config, "bench model")
        let compute = startCompute(config.compute, threads: threads, announce: true)
        let bench = StepBenchmark(config: config, compute: compute, batch: batch, seconds: seconds, steps: steps)
        print(bench.runModel(preset: preset))
    }
}
