// Start-up and checkpoints of a run (ARCHITECTURE "Rank 0: checkpoints", "Global data order"): rank 0
// reads the newest valid checkpoint and broadcasts parameters, optimizer moments and the trainer state; a
// fresh run broadcasts rank 0's initial parameters, so replicas start identical. A run resumed at
// another world size keeps its global batch M = world_size × update_freq.

import Foundation
import Tensor
import Distributed
import W2VBert
import Audio

/// What rank 0 tells the others at start-up.
struct StartMessage: Codable {
    var state: TrainerState?
    var resumedFrom: String?
    var error: String?
}

extension Trainer {
    /// Loads (rank 0) and broadcasts the newest checkpoint, or broadcasts the initial parameters.
    func resumeOrStart() throws {
        var bytes: [UInt8] = []
        if isRoot {
            var start = loadNewest()
            // --init-from: A fresh run (nothing resumed) takes another checkpoint's or an HF model's
            // weights; step 0 and a fresh optimizer. The parameter broadcast below hands them to every rank.
            if start.state == nil && start.error == nil, let src = options.initFrom {
                do { say(try initializeFrom(src)) } catch { start.error = "--init-from: \(error)" }
            }
            bytes = Array(try JSONEncoder().encode(start))
        }
        bytes = try coll.broadcast("trainer state", bytes: bytes)
        let message: StartMessage
        do { message = try JSONDecoder().decode(StartMessage.self, from: Data(bytes)) } catch {
            throw TrainError("the trainer state broadcast by rank 0 does not decode: \(describe(error))")
        }
        if let e = message.error { throw TrainError(e) }
        if options.requireCheckpoint && message.state == nil {
            throw TrainError(
                "\(options.runDirectory): no checkpoint to evaluate "
                    + "(HINT: point --run-dir at a training run)")
        }
        try coll.broadcast("parameters", objective.params.ptr, count: layout.count, type: .float)
        try coll.broadcast("adam exp_avg", optimizer.m.ptr, count: optimizer.stateCount, type: .float)
        try coll.broadcast("adam exp_avg_sq", optimizer.v.ptr, count: optimizer.stateCount, type: .float)
        if let s = message.state { try adopt(s) }
    }

    /// Rank 0: the newest usable checkpoint read into the buffers, or an error to broadcast.
    func loadNewest() -> StartMessage {
        if !options.resume {
            return checkpoints.list().isEmpty
                ? StartMessage()
                : StartMessage(
                    error:
                        "\(options.runDirectory) already holds checkpoints and --no-resume was given; choose another "
                        + "--run-dir or remove them")
        }
        do {
            guard
                let got = try checkpoints.loadLatest(
                    tensors: tensors, parameters: objective.params.ptr,
                    adamM: optimizer.m.ptr, adamV: optimizer.v.ptr)
            else {
                return StartMessage()
            }
            for w in got.warnings { warn(w) }
            say("resumed from \(got.directory) (step \(got.step))")
            return StartMessage(state: got.state, resumedFrom: got.directory)
        } catch { return StartMessage(error: "\(error)") }
    }

    /// Takes over step, cursor, codebook window and the global batch rule of a checkpoint.
    func adopt(_ s: TrainerState) throws {
        step = s.step
        optimizer.step = s.optimizerStep
        cursor = DataCursor(epoch: s.epoch, microBatch: s.microBatch)
        consecutiveSkips = s.consecutiveSkips
        if s.codeWindow.count == codeWindow.count { codeWindow = s.codeWindow }
        let oldM = s.worldSize * s.updateFreq
        if oldM % comm.size != 0 {
            throw TrainError(
                "cannot resume a run of \(s.worldSize) ranks × update_freq \(s.updateFreq) (global batch "
                    + "\(oldM) micro-batches) on \(comm.size) ranks: \(comm.size) does not divide \(oldM)")
        }
        objective.updateFreq = oldM / comm.size
        if objective.updateFreq != config.train.updateFreq || s.worldSize != comm.size {
            say(
                "world size \(s.worldSize) → \(comm.size): train.update_freq \(s.updateFreq) → \(objective.updateFreq) "
                    + "keeps the global batch of \(oldM) micro-batches")
        }
    }

    var trainerState: TrainerState {
        var s = TrainerState()
        s.step = step
        s.optimizerStep = optimizer.step
        s.epoch = cursor.epoch
        s.microBatch = cursor.microBatch
        s.worldSize = comm.size
        s.updateFreq = objective.updateFreq
        s.seed = config.train.seed
        s.tau = Double(optimizer.tau)
        s.lr = Double(optimizer.learningRate)
        s.consecutiveSkips = consecutiveSkips
        s.codeWindow = codeWindow
        s.config = config.yaml
        s.validLoss = lastValidLoss.flatMap { $0.isNaN ? nil : $0 }
        s.speakers = conditioning?.labels
        return s
    }

    /// Rank 0 writes a checkpoint; nobody leaves before it has finished (mpirun kills the job when a rank exits).
    func saveCheckpoint(reason: String) throws {
        if isRoot {
            let dir = try checkpoints.save(
                step: step, tensors: tensors, parameters: objective.params.ptr,
                adamM: optimizer.m.ptr, adamV: optimizer.v.ptr, state: trainerState,
                validLoss: reason == "valid" ? lastValidLoss : nil)
            try sinks.event("checkpoint", step: step, ["directory": dir, "reason": reason])
            say("checkpoint \(dir) (\(reason))")
        }
        try coll.barrier("checkpoint barrier")
    }

    /// Where the ranks run (printed and recorded: on a cluster, check they landed where intended), the
    /// resolved config, and a start or resume event.
    func announce() throws {
        var mine = [UInt8](repeating: 0, count: 64)
        for (i, b) in comm.hostName.utf8.prefix(63).enumerated() { mine[i] = b }
        var hosts = [UInt8](repeating: 0, count: 64 * comm.size)
        try mine.withUnsafeBytes { src in
            try hosts.withUnsafeMutableBytes { dst in
                try coll.allGather("host names", send: src.baseAddress!, recv: dst.baseAddress!, count: 64, type: .byte)
            }
        }
        let names = (0..<comm.size).map { r in
            String(decoding: hosts[(r * 64)..<(r * 64 + 64)].prefix { $0 != 0 }, as: UTF8.self)
        }
        for (r, h) in names.enumerated() { say("rank \(r) of \(comm.size) on host \(h)") }
        guard isRoot else { return }
        let path = options.runDirectory + "/config.yaml"
        do { try config.yaml.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw TrainError("\(path): cannot write the resolved config: \(error)")
        }
        try conditioning?.record(runDirectory: options.runDirectory)
        try labels?.record(runDirectory: options.runDirectory)
        if let s = labels?.skippedSummary { say(s) }
        try sinks.event(
            step > 0 ? "resume" : "start", step: step,
            [
                "world_size": comm.size, "update_freq": objective.updateFreq,
                "parameters": layout.parameterCount, "hosts": names,
            ])
        say(
            "w2vbert \(labels == nil ? "train" : "finetune"): \(layout.parameterCount) parameters, "
                + "\(comm.size) rank(s) × update_freq \(objective.updateFreq), \(trainManifest.count) utterances, "
                + "steps \(step)→\(config.optimizer.maxSteps)"
        )
        let M = comm.size * objective.updateFreq
        if M > 1 {
            // What a synchronous step costs relative to a perfectly balanced one, with and without balance_steps.
            var other = order.config
            other.balanceSteps.toggle()
            let plain = try DataOrder(
                lengths: order.lengths, config: other, encoderLength: order.encoderLength,
                cost: order.cost)
            let p = order.plan(epoch: cursor.epoch, microBatchesPerStep: M)
            let mine = order.stepImbalance(p)
            let theirs = plain.stepImbalance(plain.plan(epoch: cursor.epoch, microBatchesPerStep: M))
            let (on, off) = order.config.balanceSteps ? (mine, theirs) : (theirs, mine)
            let format =
                "data: %d micro-batches per epoch, %d steps of %d; a step's costliest micro-batch is %.3f× "
                + "the mean with train.balance_steps=true, %.3f× with false"
            say(
                String(format: format, p.batches.count, p.stepsPerEpoch, M, on, off)
                    + " (this run: \(order.config.balanceSteps))")
        }
    }
}
