// The data-parallel trainer of `train` and `finetune`: one instance per rank. `run` is the loop over
// optimizer steps of a TrainingObjective (pre-training or CTC fine-tuning); each step's parts live in their
// own files, in the order the data flows:
//   data      Audio.DataLoader → this rank's update_freq micro-batches of step s (global order, cursor);
//             fine-tuning's labels ride along (FinetuneLabels.swift)
//   step      TrainStep.swift (pre-training) or CTCStep.swift (fine-tuning): forward → backward (buckets
//             all-reduced in the background) → GradientStep.swift: non-finite agreement → clip → AdamW
//                                                                                     → StepResult
//   metrics   Metric.swift: one list of metrics → metrics.jsonl, TensorBoard, console
//   replicas  ReplicaChecks.swift: fingerprints every dist.fingerprint_interval steps; codebook revival
//   validate  Validation.swift; checkpoints and resume: Resume.swift (trainer.json = TrainerState)
// Every collective goes through `Collectives` (named, sequence-numbered, under the watchdog) and every
// rank issues the same collectives in the same order.

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio
import CProcess

/// Exit statuses of `w2vbert train` (README "Exit statuses", docs/robustness.md); Slurm scripts requeue on `stopped`.
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
    public init(_ message: String, exit: TrainExit = .error) {
        self.message = message
        self.exit = exit
    }
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
    public var loaderWorkers = 2
    // Test hooks (hidden CLI options).
    public var divergeRank: Int? = nil  // this rank perturbs a parameter …
    public var divergeStep: Int? = nil  // … before this step
    public var skipCollective: Int64? = nil  // a rank skips this collective (watchdog test)
    public var skipRank = 1
    public var stopAfterStep: Int? = nil  // behave as if SIGTERM arrived after this many steps
    public var requireCheckpoint = false  // validate: a checkpoint must exist
    public var initFrom: String? = nil  // a fresh run starts from these weights (InitFrom.swift)
    /// CTC fine-tuning (`w2vbert finetune`): model.head ctc, labels from the manifests' .wrd files.
    public var finetune = false
    public var dictionary: String? = nil  // --dict: the letter dictionary of a fresh fine-tuning run
    public init(trainManifest: String, validManifest: String?, runDirectory: String) {
        self.trainManifest = trainManifest
        self.validManifest = validManifest
        self.runDirectory = runDirectory
    }
}

public final class Trainer {
    public let config: Config
    public let options: TrainOptions
    let comm: Communicator
    let coll: Collectives
    /// The model, its step and its validation (pre-training or CTC fine-tuning).
    let objective: TrainingObjective
    var optimizer: Optimizer { objective.optimizer }
    let layout: ParameterLayout
    let checkpoints: CheckpointManager
    let sinks: MetricSinks
    let trainManifest: Manifest
    let validManifest: Manifest?
    let order: DataOrder
    /// This rank's validation micro-batches (epoch-0 plan of the valid manifest, round-robin over ranks).
    let validPlan: [PlannedBatch]
    let tensors: CheckpointTensors
    var cursor = DataCursor()
    public internal(set) var step = 0
    var consecutiveSkips = 0
    /// Hard-code counts since the last codebook sync (global).
    var codeWindow: [Double]
    var lastValidLoss: Double? = nil
    let isRoot: Bool
    /// The labels behind the micro-batches' per-utterance conditioning indices, nil when no model option
    /// conditions on labels (ConditioningLabels.swift).
    let conditioning: ConditioningLabels?
    /// Fine-tuning's labels and dictionary (nil in pre-training).
    let labels: FinetuneLabels?
    /// What the manifests' entries are and how the loader reads them (SequenceSetup.swift).
    let format: SequenceFormat

    public init(config: Config, compute: Compute, options: TrainOptions, comm: Communicator) throws {
        self.comm = comm
        self.options = options
        isRoot = comm.rank == 0
        var c = config
        if let m = options.maxSteps { c.optimizer.maxSteps = m }
        // Checkpoints record the precision the run computes in (auto resolved on this machine).
        c.compute.precision = PrecisionSetting(compute.precision)
        trainManifest = try Trainer.readManifest(options.trainManifest)
        validManifest = try options.validManifest.map(Trainer.readManifest)
        format = try SequenceSetup.prepare(
            &c, train: trainManifest, valid: validManifest, trainPath: options.trainManifest,
            validPath: options.validManifest, runDirectory: options.runDirectory,
            writes: comm.rank == 0 && !options.requireCheckpoint)
        // The options' conditioning labels, before the layout is built (they may size it).
        conditioning = try RunOptions.prepare(
            &c, train: trainManifest, valid: validManifest,
            trainPath: options.trainManifest, runDirectory: options.runDirectory,
            training: !options.requireCheckpoint)
        labels = try options.finetune ? Trainer.finetuneLabels(&c, options, trainManifest, validManifest) : nil
        self.config = c
        coll = Collectives(comm: comm, timeout: c.dist.timeout)
        if let s = options.skipCollective, comm.rank == options.skipRank { coll.skipSequenceForTest = s }
        order = try Trainer.dataOrder(
            trainManifest, path: options.trainManifest, config: c, lengths: labels?.trainLengths)
        let validLengths = labels?.validLengths
        validPlan =
            try validManifest.map { vm in
                let mine = try Trainer.dataOrder(vm, path: options.validManifest!, config: c, lengths: validLengths)
                    .plan(epoch: 0, microBatchesPerStep: 1)
                    .batches.filter { $0.index % comm.size == comm.rank }
                return c.train.validBatches > 0 ? Array(mine.prefix(c.train.validBatches)) : mine
            } ?? []
        let (maxBatch, maxT0) = try Trainer.capacity(
            trainManifest, validManifest, config: c,
            path: options.trainManifest)
        objective = Trainer.objective(
            c, compute: compute, labels: labels, collectives: coll, maxBatch: maxBatch, maxFrames: maxT0)
        layout = objective.layout
        codeWindow = [Double](repeating: 0, count: labels == nil ? c.quantizer.groups * c.quantizer.entries : 0)
        // Frozen tensors (a frozen base model, a frozen front end) have no optimizer state to save.
        tensors = CheckpointTensors(layout: layout, config: c)
        checkpoints = CheckpointManager(runDirectory: options.runDirectory, keepLast: c.train.keepLast)
        // A checkpoint of another architecture is refused (resume falls back).
        checkpoints.expectedConfigYAML = c.yaml
        sinks = try Trainer.sinks(options, root: isRoot)
    }

    static func readManifest(_ path: String) throws -> Manifest {
        let m: Manifest
        do { m = try Manifest.read(path: path) } catch { throw TrainError("\(error)") }
        guard m.count > 0 else { throw TrainError("\(path): the manifest lists no files") }
        return m
    }

    /// The data order of manifest `m`; `lengths` (fine-tuning) replace the manifest's, 0 for skipped entries.
    /// The data order's settings of a run.
    static func orderConfig(_ c: Config) -> DataOrderConfig {
        var oc = DataOrderConfig(
            seed: c.train.seed, maxSamples: c.train.maxSamples, maxFrames: c.train.maxFrames,
            maskSpan: c.maskSpanForLengthFilter, minSpans: c.mask.minSpans, balanceSteps: c.train.balanceSteps)
        oc.fbank = c.data.kind == .audio
        return oc
    }

    static func dataOrder(_ m: Manifest, path: String, config c: Config, lengths: [Int]? = nil) throws -> DataOrder {
        let oc = orderConfig(c)
        // balance_steps: a micro-batch's cost is its matrix-product FLOPs with about half the frames masked.
        let cost: @Sendable (Int, Int) -> Double = { b, t0 in
            c.trainingMatmulFlops(batch: b, t0: t0, masked: b * c.encoderLength(t0: t0) / 2)
        }
        do {
            return try DataOrder(
                lengths: lengths ?? m.entries.map { $0.samples }, config: oc,
                encoderLength: { c.encoderLength(t0: $0) }, cost: cost)
        } catch { throw TrainError("\(path): \(error)") }
    }

    /// Arena capacity: B·max T0 ≤ max_frames by construction, so B ≤ max_frames / (shortest kept T0).
    static func capacity(
        _ train: Manifest, _ valid: Manifest?, config c: Config,
        path: String
    ) throws -> (batch: Int, frames: Int) {
        let lengths = train.entries.map { $0.samples } + (valid?.entries.map { $0.samples } ?? [])
        let oc = orderConfig(c)
        let kept = lengths.map { oc.frames(min($0, oc.maxSamples)) }.filter {
            c.encoderLength(t0: $0) >= c.maskSpanForLengthFilter + c.mask.minSpans
        }
        guard let minT0 = kept.min(), let maxT0 = kept.max() else {
            let span = c.model.head == .ctc ? "finetune.mask_time_span" : "mask.span"
            throw TrainError(
                "\(path): no utterance is long enough for \(span) + mask.min_spans frames after the feature encoder")
        }
        return (max(1, c.train.maxFrames / minT0), maxT0)
    }

    static func sinks(_ o: TrainOptions, root: Bool) throws -> MetricSinks {
        guard root else { return MetricSinks(log: nil, tensorboard: nil, console: nil) }
        do {
            try FileManager.default.createDirectory(atPath: o.runDirectory, withIntermediateDirectories: true)
            return MetricSinks(
                log: try MetricsLog(path: o.runDirectory + "/metrics.jsonl"),
                tensorboard: try TensorBoardWriter(directory: o.runDirectory + "/tensorboard"),
                console: o.quiet ? nil : { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) })
        } catch { throw TrainError("\(o.runDirectory): cannot write the run folder: \(error)") }
    }

    func say(_ s: String) { if isRoot && !options.quiet { FileHandle.standardOutput.write(Data((s + "\n").utf8)) } }
    func warn(_ s: String) { FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): \(s)\n".utf8)) }

    // MARK: The loop

    public func run() throws -> TrainExit {
        w2v_install_stop_handlers()
        try resumeOrStart()
        try announce()
        let c = config
        let loader = try makeLoader()
        defer { loader.stop() }
        var window = MetricWindow(config: c)
        var lastLog = monotonicSeconds()
        let runStart = lastLog, startStep = step
        if c.optimizer.maxSteps == 0 && step == 0 {
            // --max-steps 0: the initial weights as a checkpoint (e.g. a randomly initialised baseline).
            try saveCheckpoint(reason: "initial")
        }
        while step < c.optimizer.maxSteps {
            if try stopRequested() { return .stopped }
            applyDivergenceHook()
            // Data: this rank's micro-batches of the step.
            let t0 = monotonicSeconds()
            let batches: [MicroBatch]
            do {
                batches = try (0..<objective.updateFreq).map { _ in try loader.next() }
            } catch {
                throw TrainError("data: \(error)")
            }
            window.dataWaitSeconds += monotonicSeconds() - t0
            cursor = batches.last!.resumeCursor
            // The step.
            let result = try objective.run(batches, step: step)
            for i in codeWindow.indices { codeWindow[i] += result.codeCounts[i] }
            if result.skipped {
                try skipStep()
                continue
            }
            consecutiveSkips = 0
            step += 1
            window.add(result)
            // Logs, replica checks, validation, checkpoints.
            if step % c.train.logInterval == 0 || step == c.optimizer.maxSteps {
                let now = monotonicSeconds()
                window.seconds = now - lastLog
                let eta = Double(c.optimizer.maxSteps - step) * (now - runStart) / Double(max(1, step - startStep))
                try logTrain(window, eta: eta)
                window = MetricWindow(config: c)
                lastLog = now
            }
            if let exit = try periodicTasks() { return exit }
        }
        try sinks.event(
            "finished", step: step,
            ["loader_wait_seconds": loader.stats.waitSeconds, "bad_files": loader.stats.badFiles])
        say("finished at step \(step)")
        coll.stop()
        return .finished
    }

    func makeLoader() throws -> DataLoader {
        var lo = LoaderOptions()
        lo.workers = options.loaderWorkers
        lo.maxBadFraction = config.train.maxBadFraction
        lo.format = format
        lo.conditioning = conditioning?.train ?? []
        lo.labels = labels?.train ?? []
        do {
            let sharding = Sharding(worldSize: comm.size, rank: comm.rank, updateFreq: objective.updateFreq)
            return try DataLoader(manifest: trainManifest, order: order, sharding: sharding, start: cursor, options: lo)
        } catch { throw TrainError("\(options.trainManifest): \(error)") }
    }

    /// Stop agreement at the step boundary: any rank's SIGTERM/SIGUSR1 → everyone checkpoints, exit 75.
    func stopRequested() throws -> Bool {
        var stop: [Int64] = [Int64(w2v_stop_signal())]
        if let s = options.stopAfterStep, step >= s { stop[0] = Int64(SIGTERM) }
        try coll.allReduce("stop flag", &stop, op: .max)
        guard stop[0] != 0 else { return false }
        say(
            "signal \(stop[0]) received: checkpointing at step \(step) and stopping "
                + "(exit \(TrainExit.stopped.rawValue))")
        try sinks.event("stop", step: step, ["signal": Int(stop[0])])
        try saveCheckpoint(reason: "signal")
        return true
    }

    func applyDivergenceHook() {
        if let r = options.divergeRank, let s = options.divergeStep, r == comm.rank, s == step {
            objective.params.ptr[0] += 1e-3
            warn("test hook: perturbed \(layout.entries[0].name)[0] before step \(step)")
        }
    }

    /// A non-finite step: every rank skipped it; too many in a row stop the run (exit 76).
    func skipStep() throws {
        consecutiveSkips += 1
        warn(
            "step \(step): non-finite loss or gradient on some rank; every rank skips this step "
                + "(\(consecutiveSkips) in a row)")
        try sinks.event("skipped_step", step: step, ["consecutive": consecutiveSkips])
        if consecutiveSkips >= config.train.maxConsecutiveSkips {
            throw TrainError(
                "\(consecutiveSkips) consecutive non-finite steps (train.max_consecutive_skips); "
                    + "stopping. The last checkpoint is intact.", exit: .nonFinite)
        }
        step += 1
    }

    /// A train record with every rank's compute, all-reduce wait and data wait (totals over the window).
    func logTrain(_ w: MetricWindow, eta: Double) throws {
        var timing = [w.computeSeconds, w.allReduceWaitSeconds, w.dataWaitSeconds]
        let k = timing.count
        var all = [Double](repeating: 0, count: k * comm.size)
        try timing.withUnsafeMutableBytes { src in
            try all.withUnsafeMutableBytes { dst in
                try coll.allGather(
                    "rank timings", send: src.baseAddress!, recv: dst.baseAddress!, count: k,
                    type: .double)
            }
        }
        var m = StepMetrics(kind: "train", step: step, metrics: objective.trainMetrics, window: w)
        m.extra = [
            "epoch": cursor.epoch, "rank_compute_seconds": stride(from: 0, to: all.count, by: k).map { all[$0] },
            "rank_allreduce_wait_seconds": stride(from: 1, to: all.count, by: k).map { all[$0] },
            "rank_data_wait_seconds": stride(from: 2, to: all.count, by: k).map { all[$0] },
        ]
        try sinks.write(m, consoleSuffix: " | eta " + formatDuration(eta), maxSteps: config.optimizer.maxSteps)
    }

    /// Fingerprints, codebook sync, validation and checkpoints due after this step.
    func periodicTasks() throws -> TrainExit? {
        let c = config
        if c.dist.fingerprintInterval > 0 && step % c.dist.fingerprintInterval == 0 {
            if let exit = try checkFingerprints() { return exit }
        }
        if labels == nil && c.codebook.syncInterval > 0 && step % c.codebook.syncInterval == 0 { try codebookSync() }
        var validated = false
        if validManifest != nil && (step % c.train.validInterval == 0 || step == c.optimizer.maxSteps) {
            try validate()
            validated = true
        }
        if step % c.train.saveInterval == 0 || step == c.optimizer.maxSteps {
            try saveCheckpoint(reason: validated ? "valid" : "interval")
        }
        return nil
    }
}

func formatDuration(_ s: Double) -> String {
    if !s.isFinite || s < 0 { return "?" }
    let t = Int(s)
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}
