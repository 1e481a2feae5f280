import Foundation
import Tensor
import Distributed
import W2VBert

/// Full training steps of a model on synthetic features, timed (`w2vbert bench model` on one process,
/// `w2vbert bench dist` on every rank of an MPI job). Measures the model and the network, not the disk.
public struct StepBenchmark {
    public let config: Config
    /// The settings every product runs with.
    public let compute: Compute
    /// Utterances per micro-batch (per rank), seconds of audio per utterance, timed steps after one warm-up.
    public let batch: Int, seconds: Double, steps: Int

    public init(config: Config, compute: Compute, batch: Int, seconds: Double, steps: Int) {
        self.config = config
        self.compute = compute
        self.batch = batch
        self.seconds = seconds
        self.steps = steps
    }

    /// One process: forward, backward and AdamW on one micro-batch per step, with the step time, throughput,
    /// model FLOP rate against the raw matrix-product rate at the FFN's shape, and memory use.
    /// `preset` is only reported.
    public func runModel(preset: String) -> BenchmarkRecord {
        let data = SyntheticBatch(config: config, batch: batch, seconds: seconds, seed: 7)
        let model = W2VBertModel(config: config, compute: compute, maxBatch: batch, maxFrames: data.t0)
        let opt = Optimizer(config: config, layout: model.layout)
        var times: [Double] = []
        var bytesBefore = 0, heapBefore = 0
        for step in 0...steps {
            if step == 1 {
                bytesBefore = FloatBuffer.allocatedBytes.current
                heapBefore = residentBytes()
            }
            let start = monotonicSeconds()
            model.zeroGrads()
            let stats = data.withView(key: RandomKey(seed: 1, step: step, microBatch: 0)) {
                model.forward($0, tau: opt.tau)
            }
            model.backward(lossScale: 1 / Float(max(stats.masked, 1)))
            opt.update(params: model.params, grads: model.grads)
            if step > 0 { times.append(monotonicSeconds() - start) }
        }
        let median = times.sorted()[times.count / 2]
        let flops = config.trainingMatmulFlops(batch: batch, t0: data.t0, masked: data.masked)
        let peak = matmulGflops(compute, m: batch * data.t, n: config.model.ffnDim, k: config.model.dim)
        return BenchmarkRecord([
            ("preset", preset), ("parameters", model.layout.parameterCount), ("batch", batch),
            ("seconds_per_utterance", seconds), ("threads", compute.threads), ("precision", compute.precision.rawValue),
            ("steps", steps), ("step_time_median", median),
            ("audio_seconds_per_second", Double(batch) * seconds / median),
            ("model_gflop_per_step", flops / 1e9), ("model_gflops", flops / median / 1e9), ("matmul_gflops", peak),
            ("matmul_fraction", flops / median / 1e9 / peak), ("activation_bytes", model.activationBytes),
            ("peak_rss_bytes", peakResidentBytes()),
            ("floatbuffer_bytes_allocated_in_steps", FloatBuffer.allocatedBytes.current - bytesBefore),
            ("rss_growth_bytes_in_steps", residentBytes() - heapBefore)
        ])
    }

    /// Every rank of `coll`: the trainer's own optimizer step (`StepRunner`: forward, backward with the
    /// per-block background all-reduce, wait, AdamW) on its own synthetic micro-batch. Returns the record
    /// (the same on every rank but for timing): median step time, throughput of all ranks, the share of
    /// all-reduce time hidden behind backward. `preset` is only reported.
    public func runDistributed(_ coll: Collectives, preset: String) throws -> BenchmarkRecord {
        var config = self.config
        config.train.updateFreq = 1
        let data = SyntheticBatch(config: config, batch: batch, seconds: seconds, seed: 11, microBatch: coll.rank)
        let model = W2VBertModel(config: config, compute: compute, maxBatch: batch, maxFrames: data.t0)
        let optimizer = Optimizer(config: config, layout: model.layout)
        let runner = StepRunner(config: config, model: model, optimizer: optimizer, collectives: coll, updateFreq: 1)
        var times: [Double] = [], hidden: [Double] = [], waits: [Double] = []
        for step in 0...steps {
            try coll.barrier("bench barrier")
            let start = monotonicSeconds()
            let r = try runner.run([data.microBatch], step: step)
            if step > 0 {
                times.append(monotonicSeconds() - start)
                waits.append(r.allReduceWaitSeconds)
                hidden.append(r.allReduceSeconds > 0 ? max(0, 1 - r.allReduceWaitSeconds / r.allReduceSeconds) : 1)
            }
        }
        let median = times.sorted()[times.count / 2]
        let audio = Double(coll.size * batch) * seconds
        return BenchmarkRecord([
            ("preset", preset), ("ranks", coll.size), ("batch_per_rank", batch), ("seconds", seconds),
            ("parameters", model.layout.parameterCount), ("step_seconds", median),
            ("audio_seconds_per_second", audio / median),
            ("allreduce_hidden_fraction", hidden.reduce(0, +) / Double(hidden.count)),
            ("allreduce_wait_seconds", waits.reduce(0, +) / Double(waits.count)),
            ("trainable_floats", runner.optimizer.stateCount),
            ("allreduce_bytes_per_step", 4 * runner.reducer.reducedFloats)
        ])
    }
}
