import ArgumentParser
import Distributed
import W2VBert
import Training

/// `w2vbert bench dist`: data-parallel step throughput on synthetic features. Run it with 1 rank and with N
/// ranks (`w2vbert bench scaling` does both) to get the scaling factor and the share of all-reduce time
/// hidden behind backward.
struct BenchDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dist",
        abstract: "Time data-parallel training steps on synthetic features under mpirun; rank 0 prints one JSON line.")

    @Option(help: "Preset: tiny, small, base, xl.") var preset = "small"
    @Option(help: "Utterances per micro-batch per rank.") var batch = 4
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
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
        let comm = try makeCommunicator()
        let compute = startCompute(config.compute, announce: comm.rank == 0)
        let coll = Collectives(comm: comm, timeout: 600)
        let bench = StepBenchmark(config: config, compute: compute, batch: batch, seconds: seconds, steps: steps)
        let record = try bench.runDistributed(coll, preset: preset)
        if comm.rank == 0 { print(record) }
        coll.stop()
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
    }
}
