// The data-parallel trainer (ARCHITECTURE "Data-parallel step", "Global data order", checkpoints and the
// codebook protocol). One instance per rank; every collective goes through `Collectives` (named,
// sequence-numbered, under the watchdog) and every rank issues the same collectives in the same order.
//
// One optimizer step s:
//   1. stop agreement (SIGTERM/SIGUSR1 → checkpoint, exit 75); test hooks
//   2. update_freq micro-batches from the loader (global micro-batches [s·M, (s+1)·M), this rank's share)
//   3. masks from (seed, s, micro-batch index); with update_freq > 1 a pre-pass sums the quantizer usage of
//      all micro-batches and all ranks first (one all-reduce), so the diversity loss is that of the step
//   4. forward/backward per micro-batch (gradients accumulate); on the last one each Conformer block's
//      gradient bucket is all-reduced in the background as soon as backward has finished it
//   5. wait for the buckets, collective non-finite check (all ranks skip together), clip, AdamW, τ, LR
//   6. metrics (one all-reduce of the sums), fingerprints, codebook revival, validation, checkpoint

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio
import CProcess

/// Exit statuses of `w2vbert train` (README "Exit statuses"); Slurm scripts requeue on `stopped`.
public enum TrainExit: Int32, Sendable {
    case finished = 0
    case error = 1
    case usage = 2
    case stopped = 75
    case nonFinite = 76
    case divergence = 77
    case watchdog = 78
}

public struct TrainError: Error, CustomStringConvertible {
    public let message: String
    public let exit: TrainExit
    public init(_ message: String, exit: TrainExit = .error) { self.message = message; self.exit = exit }
    public var description: String { message }
}

/// What the command line gives the trainer besides the config.
public struct TrainOptions: Sendable {
    public var trainManifest: String
    public var validManifest: String?
    public var runDirectory: String
    public var maxSteps: Int?
    public var resume = true
    public var quiet = false
    public var loaderWorkers = 1
    // Test hooks (hidden CLI options).
    public var divergeRank: Int? = nil        // this rank perturbs a parameter …
    public var divergeStep: Int? = nil        // … before this step
    public var skipCollective: Int64? = nil   // a rank skips this collective (watchdog test)
    public var skipRank = 1
    public var stopAfterStep: Int? = nil      // behave as if SIGTERM arrived after this many steps
    public var requireCheckpoint = false      // validate: a checkpoint must exist
    public init(trainManifest: String, validManifest: String?, runDirectory: String) {
        self.trainManifest = trainManifest; self.validManifest = validManifest; self.runDirectory = runDirectory
    }
}

/// Per-step sums all-reduced for the metrics.
struct StepSums {
    var contrastive = 0.0, mlm = 0.0, correctC = 0.0, correctM = 0.0, masked = 0.0, audioSeconds = 0.0, utterances = 0.0
    var array: [Double] { [contrastive, mlm, correctC, correctM, masked, audioSeconds, utterances] }
    init() {}
    init(_ a: [Double]) { contrastive = a[0]; mlm = a[1]; correctC = a[2]; correctM = a[3]; masked = a[4]; audioSeconds = a[5]; utterances = a[6] }
    mutating func add(_ o: StepSums) {
        contrastive += o.contrastive; mlm += o.mlm; correctC += o.correctC; correctM += o.correctM
        masked += o.masked; audioSeconds += o.audioSeconds; utterances += o.utterances
    }
    mutating func add(_ s: StepStats, audio: Double, utterances u: Int) {
        contrastive += s.contrastiveLossSum; mlm += s.mlmLossSum
        correctC += Double(s.contrastiveCorrect); correctM += Double(s.mlmCorrect); masked += Double(s.masked)
        audioSeconds += audio; utterances += Double(u)
    }
}

public final class Trainer {
    public let config: Config
    public let options: TrainOptions
    let comm: Communicator
    let coll: Collectives
    let model: W2VBertModel
    let optimizer: Optimizer
    let layout: ParameterLayout
    let reducer: GradientBucketReducer
    let blockBucket: [Int]
    let checkpoints: CheckpointManager
    let metrics: MetricsLog?
    let tensorboard: TensorBoardWriter?
    let trainManifest: Manifest
    let validManifest: Manifest?
    let order: DataOrder
    /// This rank's validation micro-batches (epoch-0 plan of the valid manifest, round-robin over ranks).
    let validPlan: [PlannedBatch]
    let masker: SpanMasker
    let tensors: CheckpointTensors
    var updateFreq: Int
    var cursor = DataCursor()
    public private(set) var step = 0
    var consecutiveSkips = 0
    var codeWindow: [Double]
    var lastValidLoss: Double? = nil
    /// Gradient accumulator for update_freq > 1: each micro-batch's backward runs into zeroed gradients
    /// and is added here, so the step's gradient is g₀ + g₁ + … in that order — bit for bit what
    /// world_size ranks summing their micro-batches produce for 2 ranks.
    var accum: FloatBuffer? = nil
    let isRoot: Bool
    let gv: Int

    public init(config: Config, options: TrainOptions, comm: Communicator) throws {
        self.comm = comm
        self.options = options
        isRoot = comm.rank == 0
        var c = config
        coll = Collectives(comm: comm, timeout: c.dist.timeout)
        if let s = options.skipCollective, comm.rank == options.skipRank { coll.skipSequenceForTest = s }
        do {
            trainManifest = try Manifest.read(path: options.trainManifest)
            validManifest = try options.validManifest.map { try Manifest.read(path: $0) }
        } catch { throw TrainError("\(error)") }
        guard trainManifest.count > 0 else { throw TrainError("\(options.trainManifest): the manifest lists no audio files") }
        if let m = options.maxSteps { c.optimizer.maxSteps = m }

        // Resume: rank 0 reads trainer.json first (world size and update_freq of the run), then everyone
        // adopts the global batch rule before any buffer is sized.
        // Issue 11 (harden): checkpoints whose trainer.json holds another architecture are refused (resume falls back).
        let manager = CheckpointManager(runDirectory: options.runDirectory, keepLast: c.train.keepLast)
        manager.expectedConfigYAML = c.yaml
        checkpoints = manager
        updateFreq = c.train.updateFreq
        self.config = c
        let cfg = c
        let orderConfig = DataOrderConfig(seed: cfg.train.seed, maxSamples: cfg.train.maxSamples, maxFrames: cfg.train.maxFrames,
                                          maskSpan: cfg.mask.span, minSpans: cfg.mask.minSpans)
        do {
            order = try DataOrder(lengths: trainManifest.entries.map { $0.samples }, config: orderConfig,
                                  encoderLength: { cfg.encoderLength(t0: $0) })
        } catch { throw TrainError("\(options.trainManifest): \(error)") }
        if let vm = validManifest {
            do {
                let vorder = try DataOrder(lengths: vm.entries.map { $0.samples }, config: orderConfig,
                                           encoderLength: { cfg.encoderLength(t0: $0) })
                let mine = vorder.plan(epoch: 0, microBatchesPerStep: 1).batches.filter { $0.index % comm.size == comm.rank }
                validPlan = cfg.train.validBatches > 0 ? Array(mine.prefix(cfg.train.validBatches)) : mine
            } catch { throw TrainError("\(options.validManifest!): \(error)") }
        } else {
            validPlan = []
        }
        masker = SpanMasker(maskProb: Double(cfg.mask.prob), span: cfg.mask.span, minSpans: cfg.mask.minSpans)

        // Capacity: B·max T0 ≤ max_frames by construction, so B ≤ max_frames / (shortest kept T0).
        var validLengths: [Int] = []
        if let v = validManifest { validLengths = v.entries.map { $0.samples } }
        let crop = cfg.train.maxSamples
        let keptT0 = (trainManifest.entries.map { $0.samples } + validLengths).map { fbankFrameCount(samples: min($0, crop)) }
            .filter { cfg.encoderLength(t0: $0) >= cfg.mask.span + cfg.mask.minSpans }
        guard let minT0 = keptT0.min(), let maxT0 = keptT0.max() else {
            throw TrainError("\(options.trainManifest): no utterance is long enough for mask.span + mask.min_spans frames after the feature encoder")
        }
        let maxBatch = max(1, cfg.train.maxFrames / minT0)
        model = W2VBertModel(config: cfg, maxBatch: maxBatch, maxFrames: maxT0, maxTotalFrames: max(cfg.train.maxFrames, maxT0))
        layout = model.layout
        optimizer = Optimizer(config: cfg, layout: layout)
        gv = cfg.quantizer.groups * cfg.quantizer.entries
        codeWindow = [Double](repeating: 0, count: gv)
        tensors = CheckpointTensors(entries: layout.entries.map { TensorEntry(name: $0.name, shape: $0.shape) },
                                    offsets: layout.entries.map { $0.offset })

        let (ranges, bucketOf) = Trainer.gradientBuckets(layout: layout, config: cfg)
        blockBucket = bucketOf
        reducer = GradientBucketReducer(collectives: coll, gradients: model.grads.ptr, buckets: ranges)

        if isRoot {
            do {
                try FileManager.default.createDirectory(atPath: options.runDirectory, withIntermediateDirectories: true)
                metrics = try MetricsLog(path: options.runDirectory + "/metrics.jsonl")
                tensorboard = try TensorBoardWriter(directory: options.runDirectory + "/tensorboard")
            } catch { throw TrainError("\(options.runDirectory): cannot write the run folder: \(error)") }
        } else {
            metrics = nil; tensorboard = nil
        }
    }

    /// Gradient buckets: one per Conformer block in the order backward finishes them, then the
    /// parameters after the blocks (quantizer, heads), then those before (frontend, projection).
    /// Returns the ranges and, per block, its bucket index.
    public static func gradientBuckets(layout: ParameterLayout, config cfg: Config) -> ([Range<Int>], [Int]) {
        let nBlocks = cfg.model.contrastiveBlocks + cfg.model.mlmBlocks
        var blockRanges: [Range<Int>] = []
        for i in 0..<nBlocks {
            let prefix = i < cfg.model.contrastiveBlocks ? "contrastive.blocks.\(i)." : "mlm.blocks.\(i - cfg.model.contrastiveBlocks)."
            let es = layout.entries.filter { $0.name.hasPrefix(prefix) }
            blockRanges.append(es.map { $0.offset }.min()!..<es.map { $0.offset + $0.count }.max()!)
        }
        var ranges: [Range<Int>] = []
        var bucketOf = [Int](repeating: 0, count: nBlocks)
        for i in stride(from: nBlocks - 1, through: 0, by: -1) { bucketOf[i] = ranges.count; ranges.append(blockRanges[i]) }
        if blockRanges.last!.upperBound < layout.count { ranges.append(blockRanges.last!.upperBound..<layout.count) }
        if blockRanges.first!.lowerBound > 0 { ranges.append(0..<blockRanges.first!.lowerBound) }
        return (ranges, bucketOf)
    }

    func say(_ s: String) { if isRoot && !options.quiet { FileHandle.standardOutput.write(Data((s + "\n").utf8)) } }
    func warn(_ s: String) { FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): \(s)\n".utf8)) }

    // MARK: Resume

    /// Rank 0 loads the newest valid checkpoint and broadcasts parameters, optimizer moments and the
    /// trainer state; a fresh run broadcasts rank 0's initial parameters (so replicas start identical
    /// whatever happened to their memory).
    func resumeOrStart() throws {
        var stateBytes: [UInt8] = []
        if isRoot {
            var state: [String: Any] = [:]
            if options.resume {
                do {
                    if let got = try checkpoints.loadLatest(tensors: tensors, parameters: model.params.ptr,
                                                            adamM: optimizer.m.ptr, adamV: optimizer.v.ptr) {
                        for w in got.warnings { warn(w) }
                        state = got.trainerState
                        state["resumed_from"] = got.directory
                        say("resumed from \(got.directory) (step \(got.step))")
                    }
                } catch { state = ["error": "\(error)"] }
            } else if !checkpoints.list().isEmpty {
                state = ["error": "\(options.runDirectory) already holds checkpoints and --no-resume was given; choose another --run-dir or remove them"]
            }
            stateBytes = Array((try? JSONSerialization.data(withJSONObject: state)) ?? Data("{}".utf8))
        }
        stateBytes = try coll.broadcast("trainer state", bytes: stateBytes)
        let state = (try? JSONSerialization.jsonObject(with: Data(stateBytes))) as? [String: Any] ?? [:]
        if let e = state["error"] as? String { throw TrainError(e) }
        if options.requireCheckpoint && state["step"] == nil {
            throw TrainError("\(options.runDirectory): no checkpoint to evaluate (HINT: point --run-dir at a training run)")
        }
        try coll.broadcast("parameters", model.params.ptr, count: layout.count, type: .float)
        try coll.broadcast("adam exp_avg", optimizer.m.ptr, count: layout.count, type: .float)
        try coll.broadcast("adam exp_avg_sq", optimizer.v.ptr, count: layout.count, type: .float)
        if let s = state["step"] as? Int {
            step = s
            optimizer.step = state["optimizer_step"] as? Int ?? s
            cursor = DataCursor(epoch: state["epoch"] as? Int ?? 0, microBatch: state["micro_batch"] as? Int ?? 0)
            consecutiveSkips = state["consecutive_skips"] as? Int ?? 0
            if let w = state["code_window"] as? [Double], w.count == gv { codeWindow = w }
            // Keep the global batch M = world_size × update_freq of the run (ARCHITECTURE "Global data order").
            let oldWorld = state["world_size"] as? Int ?? comm.size
            let oldFreq = state["update_freq"] as? Int ?? config.train.updateFreq
            let oldM = oldWorld * oldFreq
            if oldM % comm.size != 0 {
                throw TrainError("cannot resume a run of \(oldWorld) ranks × update_freq \(oldFreq) (global batch \(oldM) micro-batches) on \(comm.size) ranks: \(comm.size) does not divide \(oldM)")
            }
            updateFreq = oldM / comm.size
            if updateFreq != config.train.updateFreq || oldWorld != comm.size {
                say("world size \(oldWorld) → \(comm.size): train.update_freq \(oldFreq) → \(updateFreq) keeps the global batch of \(oldM) micro-batches")
            }
        }
    }

    func trainerState() -> [String: Any] {
        [
            "step": step, "optimizer_step": optimizer.step, "epoch": cursor.epoch, "micro_batch": cursor.microBatch,
            "world_size": comm.size, "update_freq": updateFreq, "seed": Int(config.train.seed),
            "tau": Double(optimizer.tau), "lr": Double(optimizer.learningRate), "consecutive_skips": consecutiveSkips,
            "code_window": codeWindow, "config": config.yaml, "version": "w2vbert-swift 0.1",
            "valid_loss": lastValidLoss ?? Double.nan,
        ].filter { !(($0.value as? Double)?.isNaN ?? false) }
    }

    func saveCheckpoint(reason: String) throws {
        if isRoot {
            let dir = try checkpoints.save(step: step, tensors: tensors, parameters: model.params.ptr, adamM: optimizer.m.ptr,
                                           adamV: optimizer.v.ptr, trainerState: trainerState(), validLoss: reason == "valid" ? lastValidLoss : nil)
            metrics?.write(["kind": "event", "event": "checkpoint", "step": step, "directory": dir, "reason": reason])
            say("checkpoint \(dir) (\(reason))")
        }
        // Nobody leaves before rank 0 has finished writing (mpirun kills the job when a rank exits).
        try coll.barrier("checkpoint barrier")
    }

    // MARK: The loop

    public func run() throws -> TrainExit {
        w2v_install_stop_handlers()
        try resumeOrStart()
        let c = config
        // Where the ranks run (printed and recorded: on a cluster, check they landed where intended).
        var mine = [UInt8](repeating: 0, count: 64)
        let host = Array(comm.hostName.utf8.prefix(63))
        for (i, b) in host.enumerated() { mine[i] = b }
        var hosts = [UInt8](repeating: 0, count: 64 * comm.size)
        try mine.withUnsafeBytes { src in
            try hosts.withUnsafeMutableBytes { dst in
                try coll.allGather("host names", send: src.baseAddress!, recv: dst.baseAddress!, count: 64, type: .byte)
            }
        }
        let hostNames = (0..<comm.size).map { r in String(decoding: hosts[(r * 64)..<(r * 64 + 64)].prefix { $0 != 0 }, as: UTF8.self) }
        for (r, h) in hostNames.enumerated() { say("rank \(r) of \(comm.size) on host \(h)") }
        if isRoot {
            do { try c.yaml.write(toFile: options.runDirectory + "/config.yaml", atomically: true, encoding: .utf8) }   // issue 11: not swallowed
            catch { throw TrainError("\(options.runDirectory)/config.yaml: cannot write: \(error.localizedDescription)") }
            metrics?.write(["kind": "event", "event": step > 0 ? "resume" : "start", "step": step, "world_size": comm.size,
                            "update_freq": updateFreq, "parameters": layout.parameterCount, "hosts": hostNames])
            say("w2vbert train: \(layout.parameterCount) parameters, \(comm.size) rank(s) × update_freq \(updateFreq), \(trainManifest.count) utterances, steps \(step)→\(c.optimizer.maxSteps)")
        }
        var loaderOptions = LoaderOptions()
        loaderOptions.workers = options.loaderWorkers
        loaderOptions.maxBadFraction = c.train.maxBadFraction
        let loader: DataLoader
        do {
            loader = try DataLoader(manifest: trainManifest, order: order,
                                    sharding: Sharding(worldSize: comm.size, rank: comm.rank, updateFreq: updateFreq),
                                    start: cursor, options: loaderOptions)
        } catch { throw TrainError("\(options.trainManifest): \(error)") }
        defer { loader.stop() }

        var lastLog = monotonicSeconds()
        var logSums = StepSums()
        var logSteps = 0
        var computeSeconds = 0.0, waitSeconds = 0.0, reduceSeconds = 0.0, dataWait = 0.0
        let runStart = monotonicSeconds()
        let startStep = step

        while step < c.optimizer.maxSteps {
            // 1. Stop agreement at the step boundary.
            var stop: [Int64] = [Int64(w2v_stop_signal())]
            if let s = options.stopAfterStep, step >= s { stop[0] = Int64(SIGTERM) }
            try coll.allReduce("stop flag", &stop, op: .max)
            if stop[0] != 0 {
                say("signal \(stop[0]) received: checkpointing at step \(step) and stopping (exit \(TrainExit.stopped.rawValue))")
                metrics?.write(["kind": "event", "event": "stop", "step": step, "signal": Int(stop[0])])
                try saveCheckpoint(reason: "signal")
                return .stopped
            }
            if let r = options.divergeRank, let s = options.divergeStep, r == comm.rank, s == step {
                model.params.ptr[0] += 1e-3
                warn("test hook: perturbed \(layout.entries[0].name)[0] before step \(step)")
            }

            // 2. This rank's micro-batches of the step.
            let t0 = monotonicSeconds()
            var batches: [Audio.MicroBatch] = []
            do {
                for _ in 0..<updateFreq { batches.append(try loader.next()) }
            } catch { throw TrainError("data: \(error)") }
            let tData = monotonicSeconds()
            dataWait += tData - t0
            cursor = batches.last!.resumeCursor

            // 3. Masks and (update_freq > 1) the step-global quantizer usage.
            let tau = optimizer.tau
            let masks = batches.map { mb -> [UInt8] in
                let T = c.encoderLength(t0: mb.maxFrames)
                var rng = mb.randomStream(seed: c.train.seed, step: step, purpose: .mask)
                return masker.mask(lengths: mb.frames.map { min(T, c.encoderLength(t0: $0)) }, paddedLength: T, stream: &rng)
            }
            var globalUsage = [Double](repeating: 0, count: 2 * gv + 1)
            if updateFreq > 1 {
                for (j, mb) in batches.enumerated() where mb.batchSize > 0 {
                    let u = withMicroBatch(mb, masks[j]) { model.quantizerUsage($0, tau: tau) }
                    for i in 0..<u.count { globalUsage[i] += u[i] }
                }
                try coll.allReduce("quantizer usage (step)", &globalUsage)
            }

            // 4. Forward and backward, accumulating.
            model.zeroGrads()
            reducer.begin()
            if updateFreq > 1 && accum == nil { accum = FloatBuffer(count: layout.count) }
            var marked = [Bool](repeating: false, count: reducer.buckets.count)
            let buckets = reducer.buckets
            let g = model.grads.ptr
            // Adds the earlier micro-batches' gradients to a bucket, then hands it to the all-reduce thread.
            let finishBucket: (Int) -> Void = { [reducer, accum, updateFreq] b in
                if updateFreq > 1, let a = accum {
                    let r = buckets[b]
                    for i in r { g[i] = a.ptr[i] + g[i] }
                }
                marked[b] = true
                reducer.markReady(b)
            }
            var sums = StepSums()
            var divLoss = 0.0, probPPL = 0.0, codePPL = 0.0
            for (j, mb) in batches.enumerated() {
                let last = j == batches.count - 1
                let reduce: (UnsafeMutablePointer<Double>, Int) -> Void
                if updateFreq == 1 {
                    reduce = { [coll] buf, n in
                        do { try coll.allReduce("quantizer usage", buf, count: n, type: .double, op: .sum) }
                        catch { FileHandle.standardError.write(Data("w2vbert: \(error)\n".utf8)); coll.comm.abort(code: 1) }
                    }
                } else {
                    reduce = { buf, n in for i in 0..<n { buf[i] = globalUsage[i] } }
                }
                if mb.batchSize == 0 {
                    // Every file of this micro-batch failed to load: take part in the collectives, add nothing.
                    if updateFreq == 1 {
                        var zeros = [Double](repeating: 0, count: 2 * gv + 1)
                        zeros.withUnsafeMutableBufferPointer { reduce($0.baseAddress!, $0.count) }
                        globalUsage = zeros
                    }
                    if !last, updateFreq > 1, let a = accum, j == 0 { a.zero() }
                    continue
                }
                model.blockBackwardDone = last ? { [blockBucket] i in finishBucket(blockBucket[i]) } : nil
                let stats = withMicroBatch(mb, masks[j]) { mbv -> StepStats in
                    let s = model.forward(mbv, tau: tau, training: true, reduce: { buf, n in
                        reduce(buf, n)
                        if updateFreq == 1 { for i in 0..<n { globalUsage[i] = buf[i] } }
                    })
                    let nMasked = max(1.0, s.maskedGlobal)
                    model.backward(lossScale: Float(1 / nMasked), diversityScale: c.loss.diversityWeight)
                    return s
                }
                sums.add(stats, audio: Double(mb.frames.reduce(0, +)) * 0.01, utterances: mb.batchSize)
                divLoss = stats.diversityLoss; probPPL = stats.probPerplexity; codePPL = stats.codePerplexity
                if !last, let a = accum {
                    if j == 0 { a.ptr.update(from: g, count: layout.count) } else { axpy(a.ptr, g, n: layout.count) }
                    model.zeroGrads()
                }
            }
            model.blockBackwardDone = nil
            for b in buckets.indices where !marked[b] { finishBucket(b) }
            let tCompute = monotonicSeconds()
            computeSeconds += tCompute - tData

            // 5. Gradients: wait for the buckets, non-finite check, clip, AdamW.
            let waited = try reducer.wait()
            waitSeconds += waited
            reduceSeconds += reducer.reduceSeconds
            for i in 0..<gv { codeWindow[i] += globalUsage[gv + i] }
            var gsum = try withSums(sums)
            let norm2 = sumOfSquares(model.grads.ptr, n: layout.count)
            var bad: [Int64] = [(norm2.isFinite && gsum.contrastive.isFinite && gsum.mlm.isFinite) ? 0 : 1]
            try coll.allReduce("non-finite check", &bad, op: .max)
            var gradNorm = norm2.squareRoot()
            if bad[0] != 0 {
                consecutiveSkips += 1
                warn("step \(step): non-finite loss or gradient on some rank; every rank skips this step (\(consecutiveSkips) in a row)")
                metrics?.write(["kind": "event", "event": "skipped_step", "step": step, "consecutive": consecutiveSkips])
                if consecutiveSkips >= c.train.maxConsecutiveSkips {
                    throw TrainError("\(consecutiveSkips) consecutive non-finite steps (train.max_consecutive_skips); stopping. The last checkpoint is intact.", exit: .nonFinite)
                }
                step += 1
                continue
            }
            consecutiveSkips = 0
            let lr = optimizer.learningRate
            gradNorm = optimizer.update(params: model.params, grads: model.grads)
            step += 1

            // 6. Metrics, protocol, validation, checkpoints.
            gsum.masked = max(gsum.masked, 1)
            logSums.add(gsum)
            logSteps += 1
            if step % c.train.logInterval == 0 || step == c.optimizer.maxSteps {
                var timing = [computeSeconds, waitSeconds, reduceSeconds, dataWait]
                var all = [Double](repeating: 0, count: 4 * comm.size)
                try timing.withUnsafeMutableBytes { src in
                    try all.withUnsafeMutableBytes { dst in
                        try coll.allGather("rank timings", send: src.baseAddress!, recv: dst.baseAddress!, count: 4, type: .double)
                    }
                }
                let now = monotonicSeconds()
                let n = logSums.masked
                let lw = logSums.contrastive / n, lm = logSums.mlm / n
                let total = c.loss.contrastiveWeight * Float(lw) + c.loss.mlmWeight * Float(lm) + c.loss.diversityWeight * Float(divLoss)
                let aps = logSums.audioSeconds / (now - lastLog)
                let eta = Double(c.optimizer.maxSteps - step) * (now - runStart) / Double(max(1, step - startStep))
                let hidden = reduceSeconds > 0 ? max(0, 1 - waitSeconds / reduceSeconds) : 1
                let record: [String: Any] = [
                    "kind": "train", "step": step, "loss": Double(total), "loss_contrastive": lw, "loss_mlm": lm,
                    "loss_diversity": divLoss, "accuracy_contrastive": logSums.correctC / n,
                    "accuracy_mlm": logSums.correctM / (n * Double(c.quantizer.groups)),
                    "prob_perplexity": probPPL, "code_perplexity": codePPL, "temperature": Double(tau), "lr": Double(lr),
                    "grad_norm": gradNorm, "audio_seconds_per_second": aps, "masked_frames": n, "epoch": cursor.epoch,
                    "allreduce_hidden_fraction": hidden, "data_wait_seconds": dataWait / Double(logSteps),
                    "rank_compute_seconds": stride(from: 0, to: all.count, by: 4).map { all[$0] },
                    "rank_allreduce_wait_seconds": stride(from: 1, to: all.count, by: 4).map { all[$0] },
                ]
                metrics?.write(record)
                tensorboard?.add(step: step, scalars: [
                    ("train/loss", Double(total)), ("train/loss_contrastive", lw), ("train/loss_mlm", lm), ("train/loss_diversity", divLoss),
                    ("train/accuracy_contrastive", logSums.correctC / n), ("train/accuracy_mlm", logSums.correctM / (n * Double(c.quantizer.groups))),
                    ("train/prob_perplexity", probPPL), ("train/code_perplexity", codePPL), ("train/temperature", Double(tau)),
                    ("train/lr", Double(lr)), ("train/grad_norm", gradNorm), ("train/audio_seconds_per_second", aps)])
                tensorboard?.flush()
                say(String(format: "step %d/%d | loss %.3f (w %.3f m %.3f d %.3f) | acc c %.3f m %.3f | ppl %.1f/%.1f | τ %.3f | lr %.2e | |g| %.3f | %.0f audio s/s | wait %.0f%% | eta %@",
                           step, c.optimizer.maxSteps, total, lw, lm, divLoss, logSums.correctC / n,
                           logSums.correctM / (n * Double(c.quantizer.groups)), probPPL, codePPL, tau, lr, gradNorm, aps,
                           100 * (1 - hidden), formatDuration(eta)))
                logSums = StepSums(); logSteps = 0; lastLog = now
                computeSeconds = 0; waitSeconds = 0; reduceSeconds = 0; dataWait = 0
            }
            if c.dist.fingerprintInterval > 0 && step % c.dist.fingerprintInterval == 0 {
                if let exit = try checkFingerprints() { return exit }
            }
            if c.codebook.syncInterval > 0 && step % c.codebook.syncInterval == 0 { try codebookSync() }
            var validated = false
            if validManifest != nil && (step % c.train.validInterval == 0 || step == c.optimizer.maxSteps) {
                try validate()
                validated = true
            }
            if step % c.train.saveInterval == 0 || step == c.optimizer.maxSteps {
                try saveCheckpoint(reason: validated ? "valid" : "interval")
            }
        }
        let st = loader.stats
        metrics?.write(["kind": "event", "event": "finished", "step": step, "loader_wait_seconds": st.waitSeconds, "bad_files": st.badFiles])
        say("finished at step \(step)")
        coll.stop()
        return .finished
    }

    func withSums(_ s: StepSums) throws -> StepSums {
        var a = s.array
        try coll.allReduce("step metrics", &a)
        return StepSums(a)
    }

    /// Views an Audio micro-batch (and its mask) as the model's input.
    func withMicroBatch<R>(_ mb: Audio.MicroBatch, _ mask: [UInt8], _ body: (W2VBert.MicroBatch) -> R) -> R {
        let lengths = mb.frames.map { Int32($0) }
        return mb.features.withUnsafeBufferPointer { f in
            lengths.withUnsafeBufferPointer { l in
                mask.withUnsafeBufferPointer { m in
                    body(W2VBert.MicroBatch(features: f.baseAddress!, lengths: l.baseAddress!, mask: m.baseAddress!, batch: mb.batchSize,
                                            frames: mb.maxFrames, seed: config.train.seed, step: step, microBatch: mb.index))
                }
            }
        }
    }

    // MARK: Validation

    /// `w2vbert validate`: load the run's newest checkpoint and evaluate the validation manifest.
    public func evaluate() throws -> TrainExit {
        try resumeOrStart()
        try validate()
        coll.stop()
        return .finished
    }

    /// Losses, accuracies and perplexities on the validation manifest: no Gumbel noise, masks and noise
    /// keyed by step 0 (the same every time), micro-batches shared round-robin over the ranks, sums
    /// all-reduced once at the end.
    public func validate() throws {
        guard let vm = validManifest else { return }
        let c = config
        var lo = LoaderOptions()
        lo.maxBadFraction = c.train.maxBadFraction
        let loader = DataLoader(manifest: vm, batches: validPlan, worldSize: comm.size, options: lo)
        defer { loader.stop() }
        var sums = [Double](repeating: 0, count: 5 + 2 * gv)   // Lw, Lm, correct c, correct m, masked, usage soft, hard
        while let mb = try loader.nextIfAny() {
            if mb.batchSize == 0 { continue }
            let T = c.encoderLength(t0: mb.maxFrames)
            var rng = RandomStream(seed: c.train.seed, step: 0, microBatch: mb.index, purpose: .mask)
            let mask = masker.mask(lengths: mb.frames.map { min(T, c.encoderLength(t0: $0)) }, paddedLength: T, stream: &rng)
            let savedStep = step
            step = 0
            let s = withMicroBatch(mb, mask) { mbv in
                model.forward(mbv, tau: optimizer.tau, training: false, reduce: { buf, n in
                    for i in 0..<(2 * self.gv) { sums[5 + i] += buf[i] }
                })
            }
            step = savedStep
            sums[0] += s.contrastiveLossSum; sums[1] += s.mlmLossSum
            sums[2] += Double(s.contrastiveCorrect); sums[3] += Double(s.mlmCorrect); sums[4] += Double(s.masked)
        }
        try coll.allReduce("validation sums", &sums)
        let n = max(1, sums[4])
        let G = c.quantizer.groups, V = c.quantizer.entries
        var probPPL = 0.0, codePPL = 0.0
        for g in 0..<G {
            var hp = 0.0, hc = 0.0
            for v in 0..<V {
                let p = sums[5 + g * V + v] / n, q = sums[5 + gv + g * V + v] / n
                hp -= p * log(p + 1e-7); hc -= q * log(q + 1e-7)
            }
            probPPL += exp(hp); codePPL += exp(hc)
        }
        let ld = (Double(gv) - probPPL) / Double(gv)
        let lw = sums[0] / n, lm = sums[1] / n
        let loss = Double(c.loss.contrastiveWeight) * lw + Double(c.loss.mlmWeight) * lm + Double(c.loss.diversityWeight) * ld
        lastValidLoss = loss
        let rec: [String: Any] = ["kind": "valid", "step": step, "loss": loss, "loss_contrastive": lw, "loss_mlm": lm, "loss_diversity": ld,
                                  "accuracy_contrastive": sums[2] / n, "accuracy_mlm": sums[3] / (n * Double(G)),
                                  "prob_perplexity": probPPL, "code_perplexity": codePPL, "masked_frames": n]
        metrics?.write(rec)
        tensorboard?.add(step: step, scalars: [("valid/loss", loss), ("valid/loss_contrastive", lw), ("valid/loss_mlm", lm),
                                               ("valid/loss_diversity", ld), ("valid/accuracy_contrastive", sums[2] / n),
                                               ("valid/accuracy_mlm", sums[3] / (n * Double(G))), ("valid/prob_perplexity", probPPL),
                                               ("valid/code_perplexity", codePPL)])
        tensorboard?.flush()
        say(String(format: "valid step %d | loss %.3f (w %.3f m %.3f d %.3f) | acc c %.3f m %.3f | ppl %.1f/%.1f | %d masked frames",
                   step, loss, lw, lm, ld, sums[2] / n, sums[3] / (n * Double(G)), probPPL, codePPL, Int(n)))
    }

    // MARK: Replica fingerprints

    /// Every rank hashes each tensor; rank 0 compares; a mismatch names the rank and the first differing
    /// tensor, then aborts (exit 77) or re-broadcasts from rank 0 (`dist.on_divergence`).
    func checkFingerprints() throws -> TrainExit? {
        var hashes = layout.entries.map { e -> Int64 in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            let raw = UnsafeRawPointer(model.params.ptr + e.offset).assumingMemoryBound(to: UInt32.self)
            for i in 0..<e.count { h = (h ^ UInt64(raw[i])) &* 0x100_0000_01b3 }
            return Int64(bitPattern: h)
        }
        hashes.append(hashes.reduce(0) { $0 &* 31 &+ $1 })
        let n = hashes.count
        var all = [Int64](repeating: 0, count: n * comm.size)
        try hashes.withUnsafeMutableBytes { src in
            try all.withUnsafeMutableBytes { dst in
                try coll.allGather("fingerprints", send: src.baseAddress!, recv: dst.baseAddress!, count: n, type: .int64)
            }
        }
        var firstBad: (rank: Int, tensor: String)? = nil
        for r in 1..<max(1, comm.size) where all[r * n + n - 1] != all[n - 1] {
            let t = (0..<(n - 1)).first { all[r * n + $0] != all[$0] } ?? 0
            firstBad = (r, layout.entries[t].name)
            break
        }
        guard let bad = firstBad else { return nil }
        let msg = "replica divergence at step \(step): rank \(bad.rank) differs from rank 0, first in tensor '\(bad.tensor)'"
        metrics?.write(["kind": "event", "event": "divergence", "step": step, "rank": bad.rank, "tensor": bad.tensor,
                        "action": config.dist.onDivergence.rawValue])
        if config.dist.onDivergence == .abort {
            if isRoot { warn(msg + "; aborting (dist.on_divergence = abort)") }
            try coll.barrier("divergence barrier")
            throw TrainError(msg, exit: .divergence)
        }
        if isRoot { warn(msg + "; re-broadcasting rank 0's parameters and optimizer state (dist.on_divergence = resync)") }
        try coll.broadcast("resync parameters", model.params.ptr, count: layout.count, type: .float)
        try coll.broadcast("resync exp_avg", optimizer.m.ptr, count: layout.count, type: .float)
        try coll.broadcast("resync exp_avg_sq", optimizer.v.ptr, count: layout.count, type: .float)
        return nil
    }

    // MARK: Codebook protocol

    /// Every `codebook.sync_interval` steps: the hard-code counts of the window (already global: they
    /// come from the all-reduced usage) are checked by rank 0; each dead code (below dead_threshold of
    /// uniform use) is revived by splitting a busy one: its codebook row and quantizer-logit row (weight,
    /// bias) are copied with small noise and the Adam moments of those rows reset. Rank 0 broadcasts the
    /// plan; every rank applies it with the same keyed noise.
    func codebookSync() throws {
        let c = config
        let G = c.quantizer.groups, V = c.quantizer.entries
        var plan: [Int32] = []
        if isRoot && c.codebook.revive {
            for g in 0..<G {
                let counts = Array(codeWindow[(g * V)..<((g + 1) * V)])
                let total = counts.reduce(0, +)
                if total <= 0 { continue }
                let threshold = c.codebook.deadThreshold * total / Double(V)
                let dead = (0..<V).filter { counts[$0] < threshold }
                if dead.isEmpty { continue }
                let busy = (0..<V).sorted { counts[$0] > counts[$1] }
                for (k, j) in dead.enumerated() { plan += [Int32(g * V + j), Int32(g * V + busy[k % max(1, busy.count / 4)])] }
            }
        }
        let bytes = try coll.broadcast("codebook revival plan", bytes: plan.withUnsafeBytes { Array($0) })
        plan = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        codeWindow = [Double](repeating: 0, count: gv)
        if plan.isEmpty { return }
        let cb = layout.entry("quantizer.codebook"), pw = layout.entry("quantizer.proj.weight"), pb = layout.entry("quantizer.proj.bias")
        let dg = c.quantizer.dim / G, d = c.model.dim
        var rng = RandomStream(seed: c.train.seed, step: step, microBatch: 0, purpose: .revive)
        let p = model.params.ptr, m = optimizer.m.ptr, v = optimizer.v.ptr
        for k in stride(from: 0, to: plan.count, by: 2) {
            let dead = Int(plan[k]), src = Int(plan[k + 1])
            for (e, width) in [(cb, dg), (pw, d)] {
                let dst = e.offset + dead * width, from = e.offset + src * width
                for i in 0..<width {
                    p[dst + i] = p[from + i] + 1e-3 * rng.nextNormal() * max(1e-3, abs(p[from + i]))
                    m[dst + i] = 0; v[dst + i] = 0
                }
            }
            p[pb.offset + dead] = p[pb.offset + src]; m[pb.offset + dead] = 0; v[pb.offset + dead] = 0
        }
        let revived = plan.count / 2
        metrics?.write(["kind": "event", "event": "codebook_revival", "step": step, "revived": revived,
                        "codes": stride(from: 0, to: plan.count, by: 2).map { Int(plan[$0]) }])
        say("codebook: revived \(revived) dead code(s) at step \(step) by splitting busy ones")
    }
}

func formatDuration(_ s: Double) -> String {
    if !s.isFinite || s < 0 { return "?" }
    let t = Int(s)
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}
