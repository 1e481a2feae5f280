import ArgumentParser
import Tensor
import W2VBert
#if canImport(Glibc)
import Glibc
#endif

/// One full training step (forward, backward, AdamW) of a preset on synthetic features, timed.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Time full training steps of a preset on synthetic features; prints one JSON line.")

    @Option(help: "Preset: tiny, small, base, xl.") var preset = "small"
    @Option(help: "Utterances per micro-batch.") var batch = 8
    @Option(help: "Seconds of audio per utterance.") var seconds = 10.0
    @Option(help: "Timed steps (after one warm-up step).") var steps = 5
    @Option(help: "Threads in the process (overrides compute.threads; default: compute.threads, else the CPUs it may use).") var threads: Int?
    @Option(name: .customLong("set"), help: "Config override section.key=value (repeatable).") var overrides: [String] = []

    func run() throws {
        let config: Config
        do { config = try Config.load(preset: preset, overrides: overrides) } catch { throw UsageError("\(error)") }
        let threads = startCompute(config.compute, threads: threads, announce: true)
        let data = SyntheticBatch(config: config, batch: batch, seconds: seconds, seed: 7)
        let t0 = data.t0, t = data.t
        let model = W2VBertModel(config: config, maxBatch: batch, maxFrames: t0)
        let opt = Optimizer(config: config, layout: model.layout)
        let masked = data.masked

        var times: [Double] = []
        times.reserveCapacity(steps)
        var bytesBefore = 0, heapBefore = 0
        for step in 0...steps {
            if step == 1 { bytesBefore = FloatBuffer.allocatedBytes.current; heapBefore = residentBytes() }
            let start = monotonicSeconds()
            model.zeroGrads()
            let stats = data.withView(key: RandomKey(seed: 1, step: step, microBatch: 0)) { model.forward($0, tau: opt.tau) }
            model.backward(lossScale: 1 / Float(max(stats.masked, 1)))
            opt.update(params: model.params, grads: model.grads)
            if step > 0 { times.append(monotonicSeconds() - start) }
        }
        let allocated = FloatBuffer.allocatedBytes.current - bytesBefore
        let heapGrowth = residentBytes() - heapBefore
        let median = times.sorted()[times.count / 2]
        let flops = config.trainingMatmulFlops(batch: batch, t0: t0, masked: masked)
        let peak = matmulGflops(m: batch * t, n: config.model.ffnDim, k: config.model.dim)
        let fields: [(String, String)] = [
            ("preset", "\"\(preset)\""), ("parameters", "\(model.layout.parameterCount)"), ("batch", "\(batch)"),
            ("seconds_per_utterance", "\(seconds)"), ("threads", "\(threads)"), ("precision", "\"\(Compute.precision.rawValue)\""), ("steps", "\(steps)"),
            ("step_time_median", fmt(median)), ("audio_seconds_per_second", fmt(Double(batch) * seconds / median)),
            ("model_gflop_per_step", fmt(flops / 1e9)), ("model_gflops", fmt(flops / median / 1e9)),
            ("matmul_gflops", fmt(peak)), ("matmul_fraction", fmt(flops / median / 1e9 / peak)),
            ("activation_bytes", "\(model.activationBytes)"), ("peak_rss_bytes", "\(peakResidentBytes())"),
            ("floatbuffer_bytes_allocated_in_steps", "\(allocated)"), ("rss_growth_bytes_in_steps", "\(heapGrowth)"),
        ]
        print("{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}")
    }

    func fmt(_ x: Double) -> String {
        if x == 0 || !x.isFinite { return "\(x)" }
        let digits = max(0, 3 - Int(log10(abs(x)).rounded(.down)))
        let p = pow(10.0, Double(digits))
        return "\((x * p).rounded() / p)"
    }
}

/// Raw matrix-product throughput at one shape in the configured precision and threads (C = A·B, the
/// FFN's first product [N, d]·[d, f]), single call timing, best of 3 after a warm-up.
func matmulGflops(m: Int, n: Int, k: Int) -> Double {
    let a = FloatBuffer(count: m * k), b = FloatBuffer(count: n * k), c = FloatBuffer(count: m * n)
    var rng = RandomStream(seed: 1, purpose: .test)
    rng.fillNormal(a.ptr, a.count); rng.fillNormal(b.ptr, b.count)
    var best = Double.infinity
    for _ in 0..<4 {
        let s = monotonicSeconds()
        gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a.ptr, lda: k, b: b.ptr, ldb: n, beta: 0, c: c.ptr, ldc: n)
        best = min(best, monotonicSeconds() - s)
    }
    return 2 * Double(m) * Double(n) * Double(k) / best / 1e9
}
