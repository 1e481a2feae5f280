// The background loader: one thread walks this rank's share of the global data order (DataSampler),
// decodes + resamples each utterance, crops it as planned, computes its fbank and CMVN, and pushes finished
// micro-batches into a bounded queue (`prefetch` deep) while the model computes. The consumer calls
// `next()`; the time it spends blocked there is measured (`stats.waitSeconds`).
//
// MicroBatch layout (llm.c style glossary): B utterances, T0 = max fbank frames in the batch, F = 80 bins.
//   features [B, T0, F]  CMVN'd log-mel, rows t ≥ frames[b] are zero
//   frames   [B]         true T0 per utterance
//
// Bad files at training time (vanished, unreadable, decoded shorter than planned): reported on stderr as
// "w2vbert: skipping PATH: REASON", counted once per file, dropped from their micro-batch (which may end
// up with B = 0 if every file of it failed: the trainer must still take part in the step's collectives),
// and skipped without re-opening in later epochs. When this rank's distinct bad files exceed
// `maxBadFraction` × (manifest size / world size) — its expected share of the corpus — the loader stops
// and `next()` throws `LoaderError.tooManyBadFiles`, naming the files. Default maxBadFraction: 0.01.

import Foundation
import Tensor

/// One micro-batch, ready for the model.
public struct MicroBatch: Sendable {
    public let epoch: Int
    public let index: Int                 // global micro-batch index within the epoch
    public let resumeCursor: DataCursor   // store this in a checkpoint written after this batch's step
    public let numBins: Int
    public let maxFrames: Int             // T0 (padded)
    public var features: [Float]          // [B, T0, numBins]
    public let frames: [Int]              // [B] true T0
    public let utterances: [Int]          // [B] manifest indices
    public let paths: [String]            // [B]
    public let offsets: [Int]             // [B] crop offset in 16 kHz samples
    public let failed: [String]           // files of this batch that could not be loaded (dropped)
    public var batchSize: Int { frames.count }

    /// The counter-based stream for this micro-batch (ARCHITECTURE: keyed by seed, step, micro-batch
    /// index), e.g. purpose .mask for SpanMasker, .maskNoise for the replacement vectors.
    public func randomStream(seed: UInt64, step: Int, purpose: RandomPurpose) -> RandomStream {
        RandomStream(seed: seed, step: step, microBatch: index, purpose: purpose)
    }
}

public struct LoaderOptions: Sendable {
    public var prefetch = 4                   // micro-batches decoded ahead of the consumer
    public var maxBadFraction = 0.01          // of this rank's share of the manifest
    public var cmvn = true
    public var quality: ResampleQuality = .medium
    public var report: @Sendable (String) -> Void = { s in FileHandle.standardError.write(Data((s + "\n").utf8)) }
    public init() {}
}

public struct LoaderStats: Sendable {
    public var batches = 0
    public var utterances = 0
    public var audioSeconds = 0.0          // audio delivered, as fbank frames × 10 ms
    public var badFiles = 0                // distinct files that failed
    public var waitSeconds = 0.0           // consumer time blocked in next()
    public var maxWaitSeconds = 0.0
    public var workSeconds = 0.0           // loader thread time spent decoding + computing
    public var meanWaitMilliseconds: Double { batches > 0 ? 1000 * waitSeconds / Double(batches) : 0 }
}

public enum LoaderError: Error, CustomStringConvertible, Sendable {
    case tooManyBadFiles(count: Int, limit: Double, files: [String])
    case stopped
    public var description: String {
        switch self {
        case let .tooManyBadFiles(count, limit, files):
            let shown = files.prefix(10).joined(separator: "\n  ")
            return "data loader: \(count) unreadable files exceed the limit (max_bad_fraction allows \(String(format: "%.1f", limit)) on this rank); aborting. Files:\n  \(shown)\(files.count > 10 ? "\n  ..." : "")\nHINT: re-run `w2vbert prepare` to rebuild the manifest, or raise max_bad_fraction."
        case .stopped: return "data loader: stopped"
        }
    }
}

@inline(__always) func nowSeconds() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

/// State shared by the consumer and the loader thread (guarded by `cond`).
final class LoaderShared: @unchecked Sendable {
    let cond = NSCondition()
    var queue: [Result<MicroBatch, Error>] = []
    var stopping = false
    var finished = false
    var stats = LoaderStats()
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }
}

/// Runs on the loader thread only.
final class LoaderProducer: @unchecked Sendable {
    let manifest: Manifest
    var sampler: DataSampler
    let options: LoaderOptions
    let shared: LoaderShared
    let fbank = KaldiFbank()
    var bad = Set<Int>()
    var badPaths = [String]()
    let badLimit: Double

    init(manifest: Manifest, sampler: DataSampler, options: LoaderOptions, shared: LoaderShared) {
        self.manifest = manifest
        self.sampler = sampler
        self.options = options
        self.shared = shared
        badLimit = options.maxBadFraction * Double(manifest.count) / Double(sampler.sharding.worldSize)
    }

    func run() {
        while true {
            let (plans, after) = sampler.nextStep()
            for plan in plans {
                let t0 = nowSeconds()
                let item: Result<MicroBatch, Error>
                do { item = .success(try build(plan, resume: after)) } catch { item = .failure(error) }
                let dt = nowSeconds() - t0
                shared.cond.lock()
                shared.stats.workSeconds += dt
                shared.stats.badFiles = bad.count
                while shared.queue.count >= shared.capacity && !shared.stopping { shared.cond.wait() }
                if shared.stopping { shared.cond.unlock(); return }
                shared.queue.append(item)
                shared.cond.broadcast()
                shared.cond.unlock()
                if case .failure = item { return }
            }
        }
    }

    func build(_ plan: PlannedBatch, resume: DataCursor) throws -> MicroBatch {
        let F = fbank.numBins
        var feats = [[Float]](), frames = [Int](), utts = [Int](), paths = [String](), offsets = [Int](), failed = [String]()
        for it in plan.items {
            let path = manifest.fullPath(it.utterance)
            if bad.contains(it.utterance) { failed.append(path); continue }
            let samples: [Float]
            do {
                samples = try AudioDecoder.load(path: path, quality: options.quality)
                let available = samples.count - it.offset
                if fbankFrameCount(samples: min(available, it.samples)) == 0 {
                    throw AudioError(.tooShort, path: path, "decoded \(samples.count) samples, the manifest says \(manifest.entries[it.utterance].samples)")
                }
            } catch {
                bad.insert(it.utterance)
                badPaths.append(path)
                failed.append(path)
                options.report("w2vbert: skipping \(error) (\(bad.count) bad files so far, limit \(String(format: "%.1f", badLimit)))")
                if Double(bad.count) > badLimit {
                    throw LoaderError.tooManyBadFiles(count: bad.count, limit: badLimit, files: badPaths)
                }
                continue
            }
            let n = min(samples.count - it.offset, it.samples)
            let T = fbankFrameCount(samples: n)
            var f = [Float](repeating: 0, count: T * F)
            samples.withUnsafeBufferPointer { s in
                f.withUnsafeMutableBufferPointer { o in
                    fbank.compute(s.baseAddress! + it.offset, count: n, into: o.baseAddress!)
                    if options.cmvn { applyCMVN(o.baseAddress!, frames: T, bins: F) }
                }
            }
            feats.append(f); frames.append(T); utts.append(it.utterance); paths.append(path); offsets.append(it.offset)
        }
        let T0 = frames.max() ?? 0
        var out = [Float](repeating: 0, count: frames.count * T0 * F)
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<frames.count {
                feats[b].withUnsafeBufferPointer { src in
                    (o.baseAddress! + b * T0 * F).update(from: src.baseAddress!, count: src.count)
                }
            }
        }
        return MicroBatch(epoch: plan.epoch, index: plan.index, resumeCursor: resume, numBins: F, maxFrames: T0,
                          features: out, frames: frames, utterances: utts, paths: paths, offsets: offsets, failed: failed)
    }
}

/// Background loader for one rank. Create it with the cursor from the checkpoint (or the start), call
/// `next()` `update_freq` times per step; store `batch.resumeCursor` of the step's last micro-batch.
public final class DataLoader: @unchecked Sendable {
    let shared: LoaderShared
    public let sharding: Sharding

    public init(manifest: Manifest, order: DataOrder, sharding: Sharding, start: DataCursor = DataCursor(),
                options: LoaderOptions = LoaderOptions()) throws {
        precondition(order.lengths.count == manifest.count, "DataLoader: the order was built for another manifest")
        let sampler = try DataSampler(order: order, sharding: sharding, cursor: start)
        self.sharding = sharding
        shared = LoaderShared(capacity: max(1, options.prefetch))
        let producer = LoaderProducer(manifest: manifest, sampler: sampler, options: options, shared: shared)
        let shared = self.shared
        let thread = Thread {
            producer.run()
            shared.cond.lock(); shared.finished = true; shared.cond.broadcast(); shared.cond.unlock()
        }
        thread.name = "w2vbert-loader"
        thread.start()
    }

    deinit { stop() }

    /// The next micro-batch of this rank (blocks until it is ready). Throws the loader's error (e.g.
    /// too many bad files), after which the loader is finished.
    public func next() throws -> MicroBatch {
        let t0 = nowSeconds()
        shared.cond.lock()
        defer { shared.cond.unlock() }
        while shared.queue.isEmpty && !shared.finished && !shared.stopping { shared.cond.wait() }
        guard !shared.queue.isEmpty else { throw LoaderError.stopped }
        let item = shared.queue.removeFirst()
        shared.cond.broadcast()
        let waited = nowSeconds() - t0
        shared.stats.waitSeconds += waited
        shared.stats.maxWaitSeconds = max(shared.stats.maxWaitSeconds, waited)
        let batch = try item.get()
        shared.stats.batches += 1
        shared.stats.utterances += batch.batchSize
        shared.stats.audioSeconds += Double(batch.frames.reduce(0, +)) * 0.01
        return batch
    }

    public var stats: LoaderStats {
        shared.cond.lock(); defer { shared.cond.unlock() }
        return shared.stats
    }

    /// Stops the thread (it finishes the micro-batch it is on).
    public func stop() {
        shared.cond.lock()
        shared.stopping = true
        shared.cond.broadcast()
        shared.cond.unlock()
    }
}
