import ArgumentParser
import Audio
import Foundation

/// `w2vbert bench-data`: fbank throughput (× real time, one core) and loader throughput / consumer wait.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-data",
        abstract: "Measure feature extraction speed (× real time on one core) and the background loader's throughput and wait time.")

    @Option(name: .long, help: "Manifest (train.tsv) for the loader benchmark; without it only the fbank is timed, on a synthetic signal.")
    var manifest: String?

    @Option(name: .long, help: "Seconds of audio for the fbank timing.")
    var seconds: Double = 600

    @Option(name: .long, help: "Micro-batches to load.")
    var batches: Int = 40

    @Option(name: .long, help: "Simulated model compute per micro-batch, in milliseconds (the consumer sleeps this long).")
    var computeMs: Double = 0

    @Option(name: .long, help: "Crop length in 16 kHz samples.")
    var maxSamples: Int = 250_000

    @Option(name: .long, help: "Padded fbank frames per micro-batch.")
    var maxFrames: Int = 6_000

    @Option(name: .long, help: "Micro-batches decoded ahead.")
    var prefetch: Int = 4

    @Option(name: .long, help: "Loader decoding threads.")
    var workers: Int = 1

    func validate() throws {
        if workers < 1 || prefetch < 1 || batches < 1 { throw ValidationError("--workers, --prefetch and --batches must be ≥ 1") }
        if seconds < 1 { throw ValidationError("--seconds must be ≥ 1") }
    }

    func run() throws {
        try AudioCommand.reportingErrors {
            // 1. fbank alone, one thread
            let n = Int(seconds * 16000)
            var x = [Float](repeating: 0, count: n)
            var phase = 0.0
            for i in 0..<n {   // a harmonic signal with a moving pitch, and a little deterministic noise
                let t = Double(i) / 16000
                phase += 2 * Double.pi * (120 + 40 * sin(t)) / 16000
                x[i] = Float(0.1 * (sin(phase) + 0.5 * sin(3 * phase) + 0.25 * sin(7 * phase)) + 0.001 * sin(Double(i * i % 7919)))
            }
            let fbank = KaldiFbank()
            let T0 = fbank.numFrames(samples: n)
            var out = [Float](repeating: 0, count: T0 * fbank.numBins)
            var best = Double.infinity
            for _ in 0..<3 {
                let t0 = Date()
                x.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                    fbank.compute(s.baseAddress!, count: n, into: o.baseAddress!)
                    applyCMVN(o.baseAddress!, frames: T0, bins: fbank.numBins)
                } }
                best = min(best, Date().timeIntervalSince(t0))
            }
            print(String(format: "fbank+CMVN: %.0f s of audio (%d frames) in %.3f s: %.0f× real time on one core (%.2f µs/frame)",
                         seconds, T0, best, seconds / best, best / Double(T0) * 1e6))

            // 1b. decode + resample + fbank on real files (the first crop of each: at most --max-samples)
            guard let manifest else { return }
            let m = try Manifest.read(path: manifest)
            let files = min(m.count, 200)
            for q in ResampleQuality.allCases {
                var decoded = 0.0, tDecode = 0.0, tFbank = 0.0
                for i in 0..<files {
                    let t0 = Date()
                    let s = try AudioDecoder.load(path: m.fullPath(i), range: 0..<maxSamples, quality: q)
                    let t1 = Date()
                    _ = fbank.compute(s)
                    tFbank += Date().timeIntervalSince(t1)
                    tDecode += t1.timeIntervalSince(t0)
                    decoded += Double(s.count) / 16000
                }
                print(String(format: "first %d files, %.1f s of audio: decode+resample (%@) %.0f× real time, fbank %.0f× real time, together %.0f× real time (one core)",
                             files, decoded, q.rawValue, decoded / tDecode, decoded / tFbank, decoded / (tDecode + tFbank)))
            }

            // 2. the loader
            let order = try DataOrder(lengths: m.entries.map(\.samples),
                                      config: DataOrderConfig(seed: 1, maxSamples: maxSamples, maxFrames: maxFrames),
                                      encoderLength: { ((($0 - 1) / 2) - 1) / 2 })
            var opts = LoaderOptions()
            opts.prefetch = prefetch
            opts.workers = workers
            let loader = try DataLoader(manifest: m, order: order, sharding: Sharding(), options: opts)
            let t2 = Date()
            var utts = 0
            for _ in 0..<batches {
                let b = try loader.next()
                utts += b.batchSize
                if computeMs > 0 { Thread.sleep(forTimeInterval: computeMs / 1000) }
            }
            let dt2 = Date().timeIntervalSince(t2)
            let st = loader.stats
            loader.stop()
            print(String(format: "loader: %d micro-batches, %d utterances, %.1f s of audio in %.2f s (%.0f× real time); simulated compute %.0f ms/batch, %d worker(s)",
                         st.batches, utts, st.audioSeconds, dt2, st.audioSeconds / dt2, computeMs, workers))
            print(String(format: "loader wait: mean %.1f ms per micro-batch, max %.1f ms, total %.2f s (%.0f%% of wall time); loader thread busy %.2f s; bad files %d",
                         st.meanWaitMilliseconds, st.maxWaitSeconds * 1000, st.waitSeconds, 100 * st.waitSeconds / dt2, st.workSeconds, st.badFiles))
        }
    }
}
