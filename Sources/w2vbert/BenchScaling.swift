import ArgumentParser
import Foundation
import Tensor
import Distributed
import W2VBert
import Training

/// Data-parallel step throughput on synthetic features: every rank runs full training steps (forward,
/// backward with the per-block background all-reduce, wait, AdamW) on its own synthetic micro-batch.
/// Run it with 1 rank and with N ranks (`launch/bench-scaling.sh` does both) to get the scaling factor
/// and the share of all-reduce time hidden behind backward. Measures the model and the network, not the disk.
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
        let config: Config
        do { config = try Config.load(preset: preset, overrides: overrides) } catch { throw UsageError("\(error)") }
        let comm = try makeCommunicator()
        setBLASThreads(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init) ?? 1)
        let coll = Collectives(comm: comm, timeout: 600)
        let data = SyntheticBatch(config: config, batch: batch, seconds: seconds, seed: 11, microBatch: comm.rank)
        let model = W2VBertModel(config: config, maxBatch: batch, maxFrames: data.t0)
        let opt = Optimizer(config: config, layout: model.layout)
        let (ranges, blockBucket) = Trainer.gradientBuckets(layout: model.layout, config: config)
        let reducer = GradientBucketReducer(collectives: coll, gradients: model.grads.ptr, buckets: ranges)
        var times: [Double] = [], hidden: [Double] = [], waits: [Double] = []
        for step in 0...steps {
            try coll.barrier("bench barrier")
            let start = monotonicSeconds()
            model.zeroGrads()
            reducer.begin()
            model.blockBackwardDone = { i in reducer.markReady(blockBucket[i]) }
            data.withMicroBatch(seed: 1, step: step, microBatch: comm.rank) { mb in
                let s = model.forward(mb, tau: opt.tau, reduce: { buf, n in try? coll.allReduce("usage", buf, count: n, type: .double, op: .sum) })
                model.backward(lossScale: Float(1 / max(1, s.maskedGlobal)), diversityScale: config.loss.diversityWeight)
            }
            let waited = try reducer.wait()
            opt.update(params: model.params, grads: model.grads)
            if step > 0 {
                times.append(monotonicSeconds() - start)
                waits.append(waited)
                hidden.append(reducer.reduceSeconds > 0 ? max(0, 1 - waited / reducer.reduceSeconds) : 1)
            }
        }
        times.sort()
        let median = times[times.count / 2]
        let audio = Double(comm.size * batch) * seconds
        if comm.rank == 0 {
            print(String(format: "{\"preset\": \"%@\", \"ranks\": %d, \"batch_per_rank\": %d, \"seconds\": %.1f, \"parameters\": %d, \"step_seconds\": %.4f, \"audio_seconds_per_second\": %.2f, \"allreduce_hidden_fraction\": %.3f, \"allreduce_wait_seconds\": %.4f}",
                         preset, comm.size, batch, seconds, model.layout.parameterCount, median, audio / median,
                         hidden.reduce(0, +) / Double(hidden.count), waits.reduce(0, +) / Double(waits.count)))
        }
        coll.stop()
        if let mpi = comm as? MPICommunicator { mpi.finalize() }
    }
}
