import ArgumentParser
import Foundation
import Tensor
import Distributed
import W2VBert
import Training

/// Data-parallel step throughput on synthetic features: every rank runs the trainer's own optimizer step
/// (`StepRunner`: forward, backward with the per-block background all-reduce, wait, AdamW) on its own
/// synthetic micro-batch. Run it with 1 rank and with N ranks (`launch/bench-scaling.sh` does both) to
/// get the scaling factor and the share of all-reduce time hidden behind backward. Measures the model
/// and the network, not the disk.
struct BenchDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-dist",
        abstract: "Time data-parallel training steps on synthetic features under mpirun; rank 0 prints one JSON line.")
    @Option(help: "Preset: tiny, small, base, xl.") var preset = "small"
    @Option(help: "Utterances per micro-batch per rank.") var batch = 4
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Option(name: .customLong("set"), help: "Config override section.key=value (repeatable).") var overrides: [String] = []

    func run() throws {
        var config: Config
        do { config = try Config.load(preset: preset, overrides: overrides) } catch { throw UsageError("\(error)") }
        let comm = try makeCommunicator()
        config.train.updateFreq = 1
        startCompute(config.compute, announce: comm.rank == 0)
        let coll = Collectives(comm: comm, timeout: 600)
        let data = SyntheticBatch(config: config, batch: batch, seconds: seconds, seed: 11, microBatch: comm.rank)
        let model = W2VBertModel(config: config, maxBatch: batch, maxFrames: data.t0)
        let runner = StepRunner(config: config, model: model, optimizer: Optimizer(config: config, layout: model.layout),
                                collectives: coll, updateFreq: 1)
        var times: [Double] = [], hidden: [Double] = [], waits: [Double] = [], reduced = 0
        for step in 0...steps {
            try coll.barrier("bench barrier")
            let start = monotonicSeconds()
            let r = try runner.run([data.microBatch], step: step)
            if step > 0 {
                times.append(monotonicSeconds() - start)
                waits.append(r.allReduceWaitSeconds)
                reduced = runner.reducer.reducedFloats
                hidden.append(r.allReduceSeconds > 0 ? max(0, 1 - r.allReduceWaitSeconds / r.allReduceSeconds) : 1)
            }
        }
        times.sort()
        let median = times[times.count / 2]
        let audio = Double(comm.size * batch) * seconds
        if comm.rank == 0 {
            print(String(format: "{\"preset\": \"%@\", \"ranks\": %d, \"batch_per_rank\": %d, \"seconds\": %.1f, \"parameters\": %d, \"step_seconds\": %.4f, \"audio_seconds_per_second\": %.2f, \"allreduce_hidden_fraction\": %.3f, \"allreduce_wait_seconds\": %.4f, \"trainable_floats\": %d, \"allreduce_bytes_per_step\": %d}",
                         preset, comm.size, batch, seconds, model.layout.parameterCount, median, audio / median,
                         hidden.reduce(0, +) / Double(hidden.count), waits.reduce(0, +) / Double(waits.count),
                         runner.optimizer.stateCount, 4 * reduced))
        }
        coll.stop()
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
    }
}
