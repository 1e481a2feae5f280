import Foundation

/// The data path timed (`w2vbert bench data`): the fbank + CMVN alone on a synthetic signal (× real time on
/// one core); with a manifest, decode + resample + fbank on its first files at every resampling quality,
/// and the background loader's throughput and the consumer's wait for micro-batches.
public struct DataBenchmark {
    /// Seconds of audio for the fbank timing.
    public var seconds: Double = 600
    /// Micro-batches to load; simulated model compute per micro-batch (the consumer sleeps), in ms.
    public var batches = 40
    public var computeMilliseconds = 0.0
    /// Crop length in 16 kHz samples; padded fbank frames per micro-batch.
    public var maxSamples = 250_000
    public var maxFrames = 6_000
    /// Micro-batches decoded ahead; decoding threads.
    public var prefetch = 4
    public var workers = 1

    public init() {}

    /// A harmonic signal with a moving pitch and a little deterministic noise, `n` samples at 16 kHz.
    static func signal(_ n: Int) -> [Float] {
        var x = [Float](repeating: 0, count: n)
        var phase = 0.0
        for i in 0..<n {
            let t = Double(i) / 16000
            phase += 2 * Double.pi * (120 + 40 * sin(t)) / 16000
            let tone = sin(phase) + 0.5 * sin(3 * phase) + 0.25 * sin(7 * phase)
            x[i] = Float(0.1 * tone + 0.001 * sin(Double(i * i % 7919)))
        }
        return x
    }

    /// fbank + CMVN of `seconds` of audio, best of 3, one thread: the report line.
    public func fbank() -> String {
        let n = Int(seconds * 16000)
        let x = Self.signal(n)
        let fbank = KaldiFbank()
        let t0 = fbank.numFrames(samples: n)
        var out = [Float](repeating: 0, count: t0 * fbank.numBins)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = Date()
            x.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    fbank.compute(s.baseAddress!, count: n, into: o.baseAddress!)
                    applyCMVN(o.baseAddress!, frames: t0, bins: fbank.numBins)
                }
            }
            best = min(best, Date().timeIntervalSince(start))
        }
        return String(
            format: "fbank+CMVN: %.0f s of audio (%d frames) in %.3f s: %.0f× real time on one core "
                + "(%.2f µs/frame)", seconds, t0, best, seconds / best, best / Double(t0) * 1e6)
    }

    /// Decode + resample + fbank of the first crop (at most `maxSamples`) of the first 200 files, at every
    /// resampling quality: one report line per quality.
    public func decode(_ m: Manifest) throws -> [String] {
        let files = min(m.count, 200)
        let fbank = KaldiFbank()
        var lines: [String] = []
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
            lines.append(
                String(
                    format: "first %d files, %.1f s of audio: decode+resample (%@) %.0f× real time, "
                        + "fbank %.0f× real time, together %.0f× real time (one core)", files, decoded,
                    q.rawValue, decoded / tDecode, decoded / tFbank, decoded / (tDecode + tFbank)))
        }
        return lines
    }

    /// `batches` micro-batches through the background loader: two report lines (throughput, wait).
    public func loader(_ m: Manifest) throws -> [String] {
        let config = DataOrderConfig(seed: 1, maxSamples: maxSamples, maxFrames: maxFrames)
        let order = try DataOrder(
            lengths: m.entries.map(\.samples), config: config,
            encoderLength: { ((($0 - 1) / 2) - 1) / 2 })
        var options = LoaderOptions()
        options.prefetch = prefetch
        options.workers = workers
        let loader = try DataLoader(manifest: m, order: order, sharding: Sharding(), options: options)
        let start = Date()
        var utterances = 0
        for _ in 0..<batches {
            utterances += try loader.next().batchSize
            if computeMilliseconds > 0 { Thread.sleep(forTimeInterval: computeMilliseconds / 1000) }
        }
        let wall = Date().timeIntervalSince(start)
        let st = loader.stats
        loader.stop()
        let throughput = String(
            format: "loader: %d micro-batches, %d utterances, %.1f s of audio in %.2f s "
                + "(%.0f× real time); simulated compute %.0f ms/batch, %d worker(s)", st.batches,
            utterances, st.audioSeconds, wall, st.audioSeconds / wall, computeMilliseconds, workers)
        let wait = String(
            format: "loader wait: mean %.1f ms per micro-batch, max %.1f ms, total %.2f s (%.0f%% of "
                + "wall time); loader thread busy %.2f s; bad files %d", st.meanWaitMilliseconds,
            st.maxWaitSeconds * 1000, st.waitSeconds, 100 * st.waitSeconds / wall, st.workSeconds,
            st.badFiles)
        return [throughput, wait]
    }
}
