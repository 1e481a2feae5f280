// The background loader: `workers` threads (default 1) take this rank's micro-batches of the global data
// order (DataSampler) in sequence, decode + resample each utterance's planned crop (only that stretch:
// `AudioDecoder.load(path:range:)` seeks into long recordings), compute its fbank
// and CMVN, and hand finished micro-batches to the consumer strictly in sequence order, at most `prefetch`
// ahead of it, while the model computes. The consumer calls `next()`; the time it spends blocked there is
// measured (`stats.waitSeconds`). The same machinery runs over a fixed list of planned micro-batches
// (validation): then `nextIfAny()` returns nil at the end.
//
// MicroBatch layout (llm.c style glossary): B utterances, T0 = max fbank frames in the batch, F = 80 bins.
//   features [B, T0, F]  CMVN'd log-mel, rows t ≥ frames[b] are zero
//   frames   [B]         true T0 per utterance
//
// Bad files at training time (vanished, unreadable, decoded shorter than planned, non-finite samples in the
// decoded crop): reported on stderr as
// "w2vbert: skipping PATH: REASON", counted once per file, dropped from their micro-batch (which may end
// up with B = 0 if every file of it failed: the trainer must still take part in the step's collectives),
// and skipped without re-opening in later epochs. When this rank's distinct bad files exceed
// `maxBadFraction` × (manifest size / world size) — its expected share of the corpus — the loader stops
// and `next()` throws `LoaderError.tooManyBadFiles`, naming the files. Default maxBadFraction: 0.01.

//
// Use from the trainer (rank r of W, update_freq U, cursor from the checkpoint or DataCursor()):
//   let order  = try DataOrder(lengths: manifest.entries.map(\.samples), config: cfg, encoderLength: L)
//   let loader = try DataLoader(manifest: manifest, order: order,
//                               sharding: Sharding(worldSize: W, rank: r, updateFreq: U), start: cursor)
//   for step in ... { for _ in 0..<U {
//       let mb = try loader.next()                        // [B, T0, 80] + frames
//       var rng = mb.randomStream(seed: seed, step: step, purpose: .mask)
//       let mask = SpanMasker(maskProb: 0.65, span: 10, minSpans: 2)
//           .mask(lengths: mb.frames.map(L), paddedLength: L(mb.maxFrames), stream: &rng)
//       ... } ; checkpoint cursor = last mb.resumeCursor }

import Foundation
import Tensor

/// One micro-batch, ready for the model.
public struct MicroBatch: Sendable {
    public let epoch: Int
    public let index: Int  // global micro-batch index within the epoch
    public let resumeCursor: DataCursor  // store this in a checkpoint written after this batch's step
    public let numBins: Int
    public let maxFrames: Int  // T0 (padded)
    public var features: [Float]  // [B, T0, numBins]
    public let frames: [Int]  // [B] true T0
    public let utterances: [Int]  // [B] manifest indices
    public let paths: [String]  // [B]
    public let offsets: [Int]  // [B] crop offset in 16 kHz samples
    public let failed: [String]  // files of this batch that could not be loaded (dropped)
    /// [B] per-utterance conditioning index, −1 = none (`LoaderOptions.conditioning` of each utterance);
    /// empty when the loader has none.
    public let conditioning: [Int32]
    /// CTC labels of the B utterances back to back (`LoaderOptions.labels`), empty when the loader has none.
    public let labels: [Int32]
    /// [B] label lengths (0: unlabelled), empty when the loader has no labels.
    public let labelLengths: [Int32]
    public var batchSize: Int { frames.count }

    public init(
        epoch: Int, index: Int, resumeCursor: DataCursor, numBins: Int, maxFrames: Int, features: [Float],
        frames: [Int], utterances: [Int], paths: [String], offsets: [Int], failed: [String],
        conditioning: [Int32] = [], labels: [Int32] = [], labelLengths: [Int32] = []
    ) {
        self.epoch = epoch
        self.index = index
        self.resumeCursor = resumeCursor
        self.numBins = numBins
        self.maxFrames = maxFrames
        self.features = features
        self.frames = frames
        self.utterances = utterances
        self.paths = paths
        self.offsets = offsets
        self.failed = failed
        self.conditioning = conditioning
        self.labels = labels
        self.labelLengths = labelLengths
    }

    /// The counter-based stream for this micro-batch (ARCHITECTURE: keyed by seed, step, micro-batch
    /// index), e.g. purpose .mask for SpanMasker, .maskNoise for the replacement vectors.
    public func randomStream(seed: UInt64, step: Int, purpose: RandomPurpose) -> RandomStream {
        RandomStream(seed: seed, step: step, microBatch: index, purpose: purpose)
    }
}

public struct LoaderOptions: Sendable {
    public var prefetch = 4  // micro-batches decoded ahead of the consumer
    public var workers = 1  // decoding threads
    public var maxBadFraction = 0.01  // of this rank's share of the manifest
    public var cmvn = true
    public var quality: ResampleQuality = .polyphase
    /// What the manifest's entries are and how they become rows (audio: fbank + CMVN).
    public var format: SequenceFormat = .audio
    public var report: @Sendable (String) -> Void = { s in FileHandle.standardError.write(Data((s + "\n").utf8)) }
    /// Per manifest entry, a conditioning index (−1 = none) copied into each micro-batch (`conditioning`);
    /// empty: none.
    public var conditioning: [Int32] = []
    /// Per manifest entry, its CTC label ids (empty: no label), copied into each micro-batch (`labels`,
    /// `labelLengths`); empty: no labels.
    public var labels: [[Int32]] = []
    public init() {}
}

public struct LoaderStats: Sendable {
    public var batches = 0
    public var utterances = 0
    public var audioSeconds = 0.0  // audio delivered, as fbank frames × 10 ms
    public var badFiles = 0  // distinct files that failed
    public var waitSeconds = 0.0  // consumer time blocked in next()
    public var maxWaitSeconds = 0.0
    public var workSeconds = 0.0  // worker thread time spent decoding + computing (all workers)
    public var meanWaitMilliseconds: Double { batches > 0 ? 1000 * waitSeconds / Double(batches) : 0 }
}

public enum LoaderError: Error, CustomStringConvertible, Sendable {
    case tooManyBadFiles(count: Int, limit: Double, files: [String])
    case stopped
    public var description: String {
        switch self {
        case let .tooManyBadFiles(count, limit, files):
            let shown = files.prefix(10).joined(separator: "\n  ")
            let allowed = String(format: "%.1f", limit)
            return "data loader: \(count) unreadable files exceed the limit (max_bad_fraction allows \(allowed) on "
                + "this rank); aborting. Files:\n  \(shown)\(files.count > 10 ? "\n  ..." : "")\n"
                + "HINT: re-run `w2vbert prepare` to rebuild the manifest, or raise max_bad_fraction."
        case .stopped: return "data loader: stopped"
        }
    }
}

/// Everything the consumer and the workers share; every field is guarded by `cond`.
final class LoaderState: @unchecked Sendable {
    let cond = NSCondition()
    let manifest: Manifest
    let options: LoaderOptions
    let capacity: Int
    let badLimit: Double
    // job source: the sampler (training, endless) or a fixed list (validation)
    var sampler: DataSampler?
    var fixed: [PlannedBatch]
    var pending: [(PlannedBatch, DataCursor)] = []  // this step's micro-batches not handed out yet
    var nextJob = 0  // sequence number of the next job handed out
    var nextOut = 0  // sequence number the consumer takes next
    var results: [Int: Result<MicroBatch, Error>] = [:]
    var stopping = false
    var aborted = false  // a worker failed: hand out no more jobs
    var terminalError: Error? = nil  // delivered once, then rethrown
    var liveWorkers = 0
    var bad = Set<Int>()
    var badPaths = [String]()
    var stats = LoaderStats()

    init(manifest: Manifest, sampler: DataSampler?, fixed: [PlannedBatch], options: LoaderOptions, worldSize: Int) {
        self.manifest = manifest
        self.sampler = sampler
        self.fixed = fixed
        precondition(
            options.conditioning.isEmpty || options.conditioning.count == manifest.count,
            "LoaderOptions.conditioning needs one index per manifest entry")
        precondition(
            options.labels.isEmpty || options.labels.count == manifest.count,
            "LoaderOptions.labels needs one label list per manifest entry")
        self.options = options
        capacity = max(1, options.prefetch)
        badLimit = options.maxBadFraction * Double(manifest.count) / Double(worldSize)
    }

    /// Under the lock: the next job, or nil when a fixed list is exhausted.
    func takeJob() -> (PlannedBatch, DataCursor)? {
        if pending.isEmpty {
            if sampler != nil {
                let (plans, after) = sampler!.nextStep()
                pending = plans.map { ($0, after) }
            } else if !fixed.isEmpty {
                let b = fixed.removeFirst()
                pending = [(b, DataCursor(epoch: b.epoch, microBatch: b.index + 1))]
            } else {
                return nil
            }
        }
        return pending.removeFirst()
    }

    /// Under the lock: record a bad file; throws once there are too many.
    func markBad(_ utterance: Int, _ path: String, _ error: Error) throws {
        if bad.insert(utterance).inserted { badPaths.append(path) }
        stats.badFiles = bad.count
        let limit = String(format: "%.1f", badLimit)
        options.report("w2vbert: skipping \(error) (\(bad.count) bad files so far, limit \(limit))")
        if Double(bad.count) > badLimit {
            throw LoaderError.tooManyBadFiles(count: bad.count, limit: badLimit, files: badPaths)
        }
    }

    /// One worker thread.
    func work() {
        let fbank = KaldiFbank()
        cond.lock()
        defer {
            liveWorkers -= 1
            cond.broadcast()
            cond.unlock()
        }
        while !stopping && !aborted {
            if nextJob - nextOut >= capacity {
                cond.wait()
                continue
            }
            guard let (plan, after) = takeJob() else { return }
            let seq = nextJob
            nextJob += 1
            cond.unlock()
            let t0 = monotonicSeconds()
            let r: Result<MicroBatch, Error>
            do { r = .success(try build(plan, resume: after, fbank: fbank)) } catch { r = .failure(error) }
            let dt = monotonicSeconds() - t0
            cond.lock()
            stats.workSeconds += dt
            results[seq] = r
            if case .failure = r { aborted = true }
            cond.broadcast()
        }
    }

    /// Decode, crop, fbank, CMVN, pad: runs outside the lock except for bad-file bookkeeping.
    func build(_ plan: PlannedBatch, resume: DataCursor, fbank: KaldiFbank) throws -> MicroBatch {
        let F = options.format.width
        var feats = [[Float]](), frames = [Int](), utts = [Int]()
        var paths = [String](), offsets = [Int](), failed = [String]()
        for it in plan.items {
            let path = manifest.fullPath(it.utterance)
            cond.lock()
            let known = bad.contains(it.utterance)
            cond.unlock()
            if known {
                failed.append(path)
                continue
            }
            let rows: [Float]
            do {
                rows =
                    options.format == .audio
                    ? try audioRows(it, path: path, fbank: fbank) : try sequence(it, path: path)
            } catch {
                failed.append(path)
                cond.lock()
                defer { cond.unlock() }
                try markBad(it.utterance, path, error)
                continue
            }
            feats.append(rows)
            frames.append(rows.count / F)
            utts.append(it.utterance)
            paths.append(path)
            offsets.append(it.offset)
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
        let conditioning = options.conditioning.isEmpty ? [] : utts.map { options.conditioning[$0] }
        let labels = options.labels.isEmpty ? [] : utts.flatMap { options.labels[$0] }
        let labelLengths = options.labels.isEmpty ? [] : utts.map { Int32(options.labels[$0].count) }
        return MicroBatch(
            epoch: plan.epoch, index: plan.index, resumeCursor: resume, numBins: F, maxFrames: T0,
            features: out, frames: frames, utterances: utts, paths: paths, offsets: offsets,
            failed: failed, conditioning: conditioning, labels: labels, labelLengths: labelLengths)
    }
}

extension LoaderState {
    /// The planned crop of an audio entry: decoded (only that stretch, seeking into long recordings;
    /// Decoder.swift), fbank, CMVN: [T, 80].
    func audioRows(_ it: PlannedUtterance, path: String, fbank: KaldiFbank) throws -> [Float] {
        let samples = try AudioDecoder.load(
            path: path, range: it.offset..<(it.offset + it.samples), quality: options.quality)
        if fbankFrameCount(samples: samples.count) == 0 {
            let listed = manifest.entries[it.utterance].samples
            throw AudioError(
                .tooShort, path: path,
                "decoded \(samples.count) samples at offset \(it.offset), the manifest says the file has \(listed)")
        }
        let n = min(samples.count, it.samples), F = fbank.numBins
        let T = fbankFrameCount(samples: n)
        var f = [Float](repeating: 0, count: T * F)
        samples.withUnsafeBufferPointer { s in
            f.withUnsafeMutableBufferPointer { o in
                fbank.compute(s.baseAddress!, count: n, into: o.baseAddress!)
                if options.cmvn { applyCMVN(o.baseAddress!, frames: T, bins: F) }
            }
        }
        return f
    }

    /// The planned crop of a series or tokens entry as rows [it.samples, width]: series normalised (NaN kept),
    /// tokens as their ids.
    func sequence(_ it: PlannedUtterance, path: String) throws -> [Float] {
        let range = it.offset..<(it.offset + it.samples)
        let listed = manifest.entries[it.utterance].samples
        func short(_ n: Int) -> AudioError {
            AudioError(.tooShort, path: path, "holds \(n) steps, the manifest says \(listed)")
        }
        let rows = try options.format.rows(path), w = options.format.width
        guard rows.count / w >= range.upperBound else { throw short(rows.count / w) }
        return Array(rows[(range.lowerBound * w)..<(range.upperBound * w)])
    }
}

/// Background loader for one rank. Training: create it with the cursor from the checkpoint (or the start),
/// call `next()` `update_freq` times per step, and store `batch.resumeCursor` of the step's last
/// micro-batch. Validation: `DataLoader(manifest:batches:)` over a fixed list, drained with `nextIfAny()`.
public final class DataLoader: @unchecked Sendable {
    let state: LoaderState

    /// Training: this rank's share of the endless global order, from `start`.
    public convenience init(
        manifest: Manifest, order: DataOrder, sharding: Sharding, start: DataCursor = DataCursor(),
        options: LoaderOptions = LoaderOptions()
    ) throws {
        precondition(order.lengths.count == manifest.count, "DataLoader: the order was built for another manifest")
        let sampler = try DataSampler(order: order, sharding: sharding, cursor: start)
        self.init(
            state: LoaderState(
                manifest: manifest, sampler: sampler, fixed: [], options: options,
                worldSize: sharding.worldSize))
    }

    /// A fixed list of planned micro-batches, loaded once in order (e.g. this rank's validation batches:
    /// `order.plan(epoch: 0, microBatchesPerStep: 1).batches` filtered to index ≡ rank mod world size).
    /// `resumeCursor` of each batch is (epoch, index + 1).
    public convenience init(
        manifest: Manifest, batches: [PlannedBatch], worldSize: Int = 1,
        options: LoaderOptions = LoaderOptions()
    ) {
        self.init(
            state: LoaderState(
                manifest: manifest, sampler: nil, fixed: batches, options: options,
                worldSize: worldSize))
    }

    init(state: LoaderState) {
        self.state = state
        let n = max(1, state.options.workers)
        state.liveWorkers = n
        for w in 0..<n {
            let thread = Thread { state.work() }
            thread.name = "w2vbert-loader-\(w)"
            thread.start()
        }
    }

    deinit { stop() }

    /// The next micro-batch, or nil after the last one of a fixed list. Blocks until it is ready; throws
    /// the loader's error (too many bad files), after which every call throws it again.
    public func nextIfAny() throws -> MicroBatch? {
        let t0 = monotonicSeconds()
        let s = state
        s.cond.lock()
        defer { s.cond.unlock() }
        if let e = s.terminalError { throw e }
        while s.results[s.nextOut] == nil {
            if s.stopping { throw LoaderError.stopped }
            if s.liveWorkers == 0 { return nil }
            s.cond.wait()
        }
        let r = s.results.removeValue(forKey: s.nextOut)!
        s.nextOut += 1
        s.cond.broadcast()
        let waited = monotonicSeconds() - t0
        s.stats.waitSeconds += waited
        s.stats.maxWaitSeconds = max(s.stats.maxWaitSeconds, waited)
        switch r {
        case .failure(let e):
            s.terminalError = e
            throw e
        case .success(let batch):
            s.stats.batches += 1
            s.stats.utterances += batch.batchSize
            s.stats.audioSeconds += Double(batch.frames.reduce(0, +)) * fbankFrameSeconds
            return batch
        }
    }

    /// The next micro-batch of the endless training order.
    public func next() throws -> MicroBatch {
        guard let b = try nextIfAny() else { throw LoaderError.stopped }
        return b
    }

    public var stats: LoaderStats {
        state.cond.lock()
        defer { state.cond.unlock() }
        return state.stats
    }

    /// Stops the workers: each finishes the micro-batch it is on, and stop returns once they have (at most
    /// `wait` seconds), so a process that exits next has no worker left inside a decoder.
    public func stop(wait: Double = 30) {
        let s = state
        s.cond.lock()
        defer { s.cond.unlock() }
        s.stopping = true
        s.cond.broadcast()
        let deadline = Date(timeIntervalSinceNow: wait)
        while s.liveWorkers > 0 && s.cond.wait(until: deadline) {}
    }
}
