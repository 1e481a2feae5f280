// Keeping the replicas identical (ARCHITECTURE "Rank 0: quantizer-codebook protocol"): fingerprints of
// every tensor compared across ranks, and the codebook revival that rank 0 plans and every rank applies.

import Foundation
import Tensor
import Distributed
import W2VBert

extension Trainer {
    /// Every rank hashes each tensor (FNV-1a); rank 0 compares; a mismatch names the rank and the first
    /// differing tensor, then aborts (exit 77) or re-broadcasts from rank 0 (`dist.on_divergence`).
    func checkFingerprints() throws -> TrainExit? {
        var hashes = layout.entries.map { e -> Int64 in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            let raw = UnsafeRawPointer(objective.params.ptr + e.offset).assumingMemoryBound(to: UInt32.self)
            for i in 0..<e.count { h = (h ^ UInt64(raw[i])) &* 0x100_0000_01b3 }
            return Int64(bitPattern: h)
        }
        hashes.append(hashes.reduce(0) { $0 &* 31 &+ $1 })
        let n = hashes.count
        var all = [Int64](repeating: 0, count: n * comm.size)
        try hashes.withUnsafeMutableBytes { src in
            try all.withUnsafeMutableBytes { dst in
                try coll.allGather(
                    "fingerprints", send: src.baseAddress!, recv: dst.baseAddress!, count: n, type: .int64)
            }
        }
        guard let r = (1..<max(1, comm.size)).first(where: { all[$0 * n + n - 1] != all[n - 1] }) else { return nil }
        let tensor = layout.entries[(0..<(n - 1)).first { all[r * n + $0] != all[$0] } ?? 0].name
        let msg = "replica divergence at step \(step): rank \(r) differs from rank 0, first in tensor '\(tensor)'"
        try sinks.event(
            "divergence", step: step, ["rank": r, "tensor": tensor, "action": config.dist.onDivergence.rawValue])
        if config.dist.onDivergence == .abort {
            if isRoot { warn(msg + "; aborting (dist.on_divergence = abort)") }
            try coll.barrier("divergence barrier")
            throw TrainError(msg, exit: .divergence)
        }
        if isRoot {
            warn(msg + "; re-broadcasting rank 0's parameters and optimizer state (dist.on_divergence = resync)")
        }
        try coll.broadcast("resync parameters", objective.params.ptr, count: layout.count, type: .float)
        try coll.broadcast("resync exp_avg", optimizer.m.ptr, count: optimizer.stateCount, type: .float)
        try coll.broadcast("resync exp_avg_sq", optimizer.v.ptr, count: optimizer.stateCount, type: .float)
        return nil
    }

    /// Every `codebook.sync_interval` steps: rank 0 checks the window's hard-code counts (already global);
    /// each dead code (below dead_threshold of uniform use) is revived by splitting a busy one: its
    /// codebook row and quantizer-logit row (weight, bias) are copied with small noise and the Adam
    /// moments of those rows reset. Rank 0 broadcasts the plan; every rank applies it with the same keyed noise.
    func codebookSync() throws {
        // A frozen base (train.trainable = adapters) keeps its codebook: no revival.
        var plan = isRoot && config.codebook.revive && !config.baseFrozen ? revivalPlan() : []
        let bytes = try coll.broadcast("codebook revival plan", bytes: plan.withUnsafeBytes { Array($0) })
        plan = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        codeWindow = [Double](repeating: 0, count: codeWindow.count)
        if plan.isEmpty { return }
        applyRevival(plan)
        let codes = stride(from: 0, to: plan.count, by: 2).map { Int(plan[$0]) }
        try sinks.event("codebook_revival", step: step, ["revived": codes.count, "codes": codes])
        say("codebook: revived \(codes.count) dead code(s) at step \(step) by splitting busy ones")
    }

    /// Pairs (dead code, busy code it copies), flattened g·V + v.
    func revivalPlan() -> [Int32] {
        let G = config.quantizer.groups, V = config.quantizer.entries
        var plan: [Int32] = []
        for g in 0..<G {
            let counts = Array(codeWindow[(g * V)..<((g + 1) * V)])
            let total = counts.reduce(0, +)
            if total <= 0 { continue }
            let threshold = config.codebook.deadThreshold * total / Double(V)
            let dead = (0..<V).filter { counts[$0] < threshold }
            if dead.isEmpty { continue }
            let busy = (0..<V).sorted { counts[$0] > counts[$1] }
            for (k, j) in dead.enumerated() {
                plan += [Int32(g * V + j), Int32(g * V + busy[k % max(1, busy.count / 4)])]
            }
        }
        return plan
    }

    func applyRevival(_ plan: [Int32]) {
        let c = config
        let cb = layout.entry("quantizer.codebook"), pw = layout.entry("quantizer.proj.weight"),
            pb = layout.entry("quantizer.proj.bias")
        let dg = c.quantizer.dim / c.quantizer.groups, d = c.model.dim
        var rng = RandomStream(seed: c.train.seed, step: step, microBatch: 0, purpose: .revive)
        let p = objective.params.ptr, m = optimizer.m.ptr, v = optimizer.v.ptr
        for k in stride(from: 0, to: plan.count, by: 2) {
            let dead = Int(plan[k]), src = Int(plan[k + 1])
            for (e, width) in [(cb, dg), (pw, d)] {
                let dst = e.offset + dead * width, from = e.offset + src * width
                for i in 0..<width {
                    p[dst + i] = p[from + i] + 1e-3 * rng.nextNormal() * max(1e-3, abs(p[from + i]))
                    m[dst + i] = 0
                    v[dst + i] = 0
                }
            }
            p[pb.offset + dead] = p[pb.offset + src]
            m[pb.offset + dead] = 0
            v[pb.offset + dead] = 0
        }
    }
}
