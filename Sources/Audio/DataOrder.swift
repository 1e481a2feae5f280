// The global data order (ARCHITECTURE "Global data order"): one deterministic list of micro-batches per
// epoch, identical on every rank, from which step s takes [s·M, (s+1)·M), M = world_size × update_freq,
// rank r the indices ≡ r (mod world_size). Everything below is a pure function of (lengths, config, epoch).
//
// Epoch e, N utterances of n_i 16 kHz samples:
//  1. shuffle 0..<N with RandomStream(seed, step: e, microBatch: 0, .shuffle) (Fisher-Yates)
//  2. crop length c_i = min(n_i, max_samples); fbank frames T0_i = 1 + ⌊(c_i − 400)/160⌋ (snip_edges, 0 if
//     c_i < 400); encoder frames L_i = encoderLength(T0_i) (the model's mapping, a parameter);
//     drop (and count) utterances with L_i < mask_span + min_spans
//  3. bucket: sort the shuffled survivors by T0 (ties keep the shuffled order), cut greedily into
//     micro-batches while B·max T0 ≤ max_frames (lengths ascend, so max T0 is the newest one)
//  4. shuffle the micro-batch list with RandomStream(seed, step: e, microBatch: 1, .shuffle).
//     With balance_steps and M > 1, steps 3–4 instead make whole steps of equal micro-batches. The greedy
//     micro-batches but the last (K mod M) + M are sorted by estimated cost (`cost(B, max T0)`, ties in
//     length order) and cut into runs of M neighbours (every other run reversed, so no rank always gets the
//     costliest micro-batch of a step). The utterances of those last ones (the longest, with
//     the part-filled last micro-batch) are cut into runs while ⌈n/M⌉·max T0 ≤ max_frames (a run of up to
//     M utterances always fits), every run but the last trimmed to a multiple of M utterances (the rest
//     starts the next run), and each run dealt into its M micro-batches row by row, back and forth
//     (utterance k of row r of run j to micro-batch k when r + j is even, else M − 1 − k). All runs are
//     shuffled with that stream and laid out one after another. A step's M micro-batches then cost nearly
//     the same, so no rank waits at the all-reduce for a costlier one (lhotse's sync_buckets does this by
//     length), and no part-filled micro-batch meets a full one. Only the very last run can be short: with
//     fewer than M utterances, its missing micro-batches are empty (those ranks take part in the step and
//     add nothing). M = 1 gives the plain order either way.
//  5. crop offsets: micro-batch j draws, in item order, offset_i = U{0 … n_i − c_i} from
//     RandomStream(seed, step: e, microBatch: j, .crop) for each cropped utterance (rank-independent)
//  6. only the first ⌊K/M⌋·M of the K micro-batches are used, so every step has exactly M micro-batches on
//     every world size; the K mod M tail micro-batches (different ones every epoch, since step 4 reshuffles)
//     are skipped and counted (`droppedTailUtterances`), like DistributedSampler's drop_last. With
//     balance_steps K is a multiple of M and nothing is skipped (a plan needs at least M utterances).
// Within an epoch no utterance is repeated; an utterance is absent only by step 2 or step 6.
// Because the sorted length sequence does not depend on the shuffle, K is the same in every epoch.
//
// The cursor (epoch, micro-batch index of the next step's first micro-batch) is Codable and goes into the
// checkpoint; `DataSampler` advances it by M per step and rolls to (e + 1, 0) when the next step would not
// fit. A run resumed from a cursor with any world size of the same M sees the same micro-batches.

import Tensor

public struct DataOrderConfig: Sendable, Codable, Equatable {
    public var seed: UInt64 = 1
    public var maxSamples = 250_000  // crop longer utterances to this many 16 kHz samples (15.6 s)
    public var maxFrames = 6_000  // padded fbank frames per micro-batch: B × max T0 ≤ maxFrames
    public var maskSpan = 10  // mask.span, for the minimum-length filter
    public var minSpans = 2
    public var balanceSteps = true  // a step's M micro-batches are cost neighbours (step 4)
    /// Lengths are 16 kHz samples that become fbank frames (audio); false: a length counts frames (series
    /// steps, tokens), and max_samples crops in frames.
    public var fbank = true
    public init() {}
    /// Input frames of a crop of n lengths units.
    @inline(__always) public func frames(_ n: Int) -> Int { fbank ? fbankFrameCount(samples: n) : n }
    public init(
        seed: UInt64, maxSamples: Int, maxFrames: Int, maskSpan: Int = 10, minSpans: Int = 2,
        balanceSteps: Bool = true
    ) {
        self.seed = seed
        self.maxSamples = maxSamples
        self.maxFrames = maxFrames
        self.maskSpan = maskSpan
        self.minSpans = minSpans
        self.balanceSteps = balanceSteps
    }
}

/// Number of fbank frames of n samples (25 ms / 10 ms at 16 kHz, snip_edges).
@inline(__always)
public func fbankFrameCount(samples n: Int) -> Int { n < 400 ? 0 : 1 + (n - 400) / 160 }
/// Seconds of audio per fbank frame (10 ms shift).
public let fbankFrameSeconds = 0.01

/// World size, rank, gradient accumulation.
public struct Sharding: Sendable, Codable, Equatable {
    public var worldSize: Int
    public var rank: Int
    public var updateFreq: Int
    public init(worldSize: Int = 1, rank: Int = 0, updateFreq: Int = 1) {
        precondition(worldSize >= 1 && rank >= 0 && rank < worldSize && updateFreq >= 1)
        self.worldSize = worldSize
        self.rank = rank
        self.updateFreq = updateFreq
    }
    /// M: micro-batches per optimizer step over all ranks.
    public var microBatchesPerStep: Int { worldSize * updateFreq }
}

/// Where the data order stands: the next step starts at micro-batch `microBatch` of epoch `epoch`.
public struct DataCursor: Sendable, Codable, Equatable, Hashable, CustomStringConvertible {
    public var epoch: Int
    public var microBatch: Int
    public init(epoch: Int = 0, microBatch: Int = 0) {
        self.epoch = epoch
        self.microBatch = microBatch
    }
    public var description: String { "epoch \(epoch) micro-batch \(microBatch)" }
}

/// One utterance of a planned micro-batch: a crop [offset, offset + samples) of manifest entry `utterance`.
public struct PlannedUtterance: Sendable, Equatable, Hashable {
    public let utterance: Int
    public let offset: Int
    public let samples: Int
    public let frames: Int  // T0 of the crop
}

public struct PlannedBatch: Sendable, Equatable {
    public let epoch: Int
    public let index: Int  // global micro-batch index within the epoch
    public let items: [PlannedUtterance]
    public var maxFrames: Int { items.map(\.frames).max() ?? 0 }
    public var paddedFrames: Int { items.count * maxFrames }
}

public struct EpochPlan: Sendable {
    public let epoch: Int
    public let batches: [PlannedBatch]  // all K micro-batches, in order
    public let usableBatches: Int  // ⌊K/M⌋·M
    public let droppedTooShort: Int  // utterances with L < span + min_spans
    public let droppedTailUtterances: Int  // utterances in the skipped tail micro-batches
    public let microBatchesPerStep: Int  // M
    public var stepsPerEpoch: Int { usableBatches / microBatchesPerStep }
}

public enum DataOrderError: Error, CustomStringConvertible, Sendable {
    case badConfig(String)
    case notEnoughData(String)
    public var description: String {
        switch self {
        case .badConfig(let m): return "data order: \(m)"
        case .notEnoughData(let m): return "data order: \(m)"
        }
    }
}

public struct DataOrder: Sendable {
    public let lengths: [Int]
    public let config: DataOrderConfig
    public let encoderLength: @Sendable (Int) -> Int
    /// Estimated compute of a micro-batch of B utterances padded to T0 frames (balance_steps).
    public let cost: @Sendable (_ batch: Int, _ t0: Int) -> Double

    /// lengths: 16 kHz samples per manifest entry; encoderLength: fbank frames T0 → encoder frames L
    /// (conv2d frontend: ((T0 − 1)/2 − 1)/2, stack: T0/2, integer division); cost: a micro-batch's
    /// compute, for balance_steps (default: its padded frames B·T0).
    public init(
        lengths: [Int], config: DataOrderConfig, encoderLength: @escaping @Sendable (Int) -> Int,
        cost: @escaping @Sendable (_ batch: Int, _ t0: Int) -> Double = { Double($0 * $1) }
    ) throws(DataOrderError) {
        let T0 = config.frames(config.maxSamples)
        guard !config.fbank || config.maxSamples >= 400 else {
            throw .badConfig("max_samples \(config.maxSamples) is shorter than one 25 ms frame")
        }
        guard T0 <= config.maxFrames else {
            throw .badConfig(
                "max_frames \(config.maxFrames) is smaller than one utterance cropped to max_samples (\(T0) frames)")
        }
        guard config.maskSpan >= 1, config.minSpans >= 1 else {
            throw .badConfig("mask span and min_spans must be ≥ 1")
        }
        self.lengths = lengths
        self.config = config
        self.encoderLength = encoderLength
        self.cost = cost
    }

    /// Whether utterance i survives the minimum-length filter.
    public func keeps(_ i: Int) -> Bool {
        let T0 = config.frames(min(lengths[i], config.maxSamples))
        return T0 > 0 && encoderLength(T0) >= config.maskSpan + config.minSpans
    }

    public func plan(epoch: Int, microBatchesPerStep M: Int) -> EpochPlan {
        let seed = config.seed
        var order = Array(lengths.indices)
        var rng = RandomStream(seed: seed, step: epoch, microBatch: 0, purpose: .shuffle)
        rng.shuffle(&order)
        // filter, then sort by (T0, shuffled position)
        var kept = [(frames: Int, pos: Int, utt: Int)]()
        kept.reserveCapacity(order.count)
        var tooShort = 0
        for (pos, u) in order.enumerated() {
            if keeps(u) {
                kept.append((config.frames(min(lengths[u], config.maxSamples)), pos, u))
            } else {
                tooShort += 1
            }
        }
        kept.sort { $0.frames != $1.frames ? $0.frames < $1.frames : $0.pos < $1.pos }
        var batchRng = RandomStream(seed: seed, step: epoch, microBatch: 1, purpose: .shuffle)
        var groups: [[Int]]  // utterance indices of each micro-batch, in order
        if config.balanceSteps && M > 1 {
            var runs = balancedRuns(kept.map(\.frames), of: M)
            batchRng.shuffle(&runs)
            groups = runs.flatMap { $0.map { $0.map { kept[$0].utt } } }
        } else {
            groups = Self.greedyBatches(kept.map(\.frames), maxFrames: config.maxFrames).map { $0.map { kept[$0].utt } }
            batchRng.shuffle(&groups)
        }
        // crops, keyed by (epoch, micro-batch index)
        var batches = [PlannedBatch]()
        batches.reserveCapacity(groups.count)
        for (j, g) in groups.enumerated() {
            var crop = RandomStream(seed: seed, step: epoch, microBatch: j, purpose: .crop)
            let items = g.map { u -> PlannedUtterance in
                let n = lengths[u], c = min(n, config.maxSamples)
                let offset = n > c ? crop.nextInt(n - c + 1) : 0
                return PlannedUtterance(utterance: u, offset: offset, samples: c, frames: config.frames(c))
            }
            batches.append(PlannedBatch(epoch: epoch, index: j, items: items))
        }
        let usable = M > 0 && kept.count >= M ? batches.count / M * M : 0
        let tail = batches[usable...].reduce(0) { $0 + $1.items.count }
        return EpochPlan(
            epoch: epoch, batches: batches, usableBatches: usable, droppedTooShort: tooShort,
            droppedTailUtterances: tail, microBatchesPerStep: max(1, M))
    }
}

extension DataOrder {
    /// Mean over the plan's steps of the costliest of a step's M micro-batches ÷ the mean micro-batch cost:
    /// how long synchronous steps take relative to perfectly balanced ones (1 for M = 1).
    public func stepImbalance(_ p: EpochPlan) -> Double {
        let M = p.microBatchesPerStep, costs = p.batches[..<p.usableBatches].map { cost($0.items.count, $0.maxFrames) }
        guard !costs.isEmpty else { return 1 }
        let worst = stride(from: 0, to: costs.count, by: M).map { costs[$0..<($0 + M)].max()! }
        return worst.reduce(0, +) / Double(worst.count) / (costs.reduce(0, +) / Double(costs.count))
    }

    /// Step 3: positions of `frames` (ascending T0) cut greedily into micro-batches while B·max T0 ≤ max_frames.
    static func greedyBatches(_ frames: [Int], maxFrames: Int) -> [[Int]] {
        var groups = [[Int]](), current = [Int]()
        for (i, f) in frames.enumerated() {
            if !current.isEmpty && (current.count + 1) * f > maxFrames {
                groups.append(current)
                current = []
            }
            current.append(i)
        }
        if !current.isEmpty { groups.append(current) }
        return groups
    }

    /// Steps 3–4 with balance_steps and M > 1: positions of `frames` (ascending T0) as runs of M
    /// micro-batches. The greedy micro-batches but the last K mod M + M are sorted by cost and cut into runs
    /// of M neighbours; the utterances of those last ones (the longest, with the part-filled last
    /// micro-batch) are dealt into runs of M equal micro-batches (`dealtRuns`).
    func balancedRuns(_ frames: [Int], of M: Int) -> [[[Int]]] {
        let greedy = Self.greedyBatches(frames, maxFrames: config.maxFrames)
        let body = max(0, greedy.count - greedy.count % M - M)
        let costs = greedy[..<body].map { cost($0.count, frames[$0.last!]) }
        let sorted = greedy.indices[..<body].sorted { costs[$0] != costs[$1] ? costs[$0] < costs[$1] : $0 < $1 }
        // Every other run reversed: no micro-batch position (rank) always gets the costliest of a step.
        var runs = stride(from: 0, to: body, by: M).map { r in
            (r / M % 2 == 0 ? Array(sorted[r..<(r + M)]) : sorted[r..<(r + M)].reversed()).map { greedy[$0] }
        }
        let first = greedy[body...].first?.first ?? frames.count
        runs += Self.dealtRuns(Array(frames[first...]), of: M, maxFrames: config.maxFrames).map {
            $0.map { $0.map { $0 + first } }
        }
        return runs
    }

    /// The end of `balancedRuns`: positions of `frames` (ascending T0) cut into runs while
    /// ⌈n/M⌉·max T0 ≤ max_frames (or n ≤ M), every run but the last trimmed to whole rows of M, each dealt
    /// back and forth into M micro-batches, row by row (the last run's may be empty).
    static func dealtRuns(_ frames: [Int], of M: Int, maxFrames: Int) -> [[[Int]]] {
        var runs = [[[Int]]](), start = 0
        while start < frames.count {
            var end = start + 1
            while end < frames.count {
                let n = end + 1 - start
                if n > M && (n + M - 1) / M * frames[end] > maxFrames { break }
                end += 1
            }
            if end < frames.count { end = start + (end - start) / M * M }
            var run = [[Int]](repeating: [], count: M)
            for i in start..<end {
                let row = (i - start) / M, col = (i - start) % M
                run[(row + runs.count) % 2 == 0 ? col : M - 1 - col].append(i)
            }
            runs.append(run)
            start = end
        }
        return runs
    }
}

/// Walks the global order step by step for one rank.
public struct DataSampler: Sendable {
    public let order: DataOrder
    public let sharding: Sharding
    public private(set) var cursor: DataCursor
    public private(set) var plan: EpochPlan

    public init(order: DataOrder, sharding: Sharding, cursor: DataCursor = DataCursor()) throws(DataOrderError) {
        self.order = order
        self.sharding = sharding
        let M = sharding.microBatchesPerStep
        let p = order.plan(epoch: cursor.epoch, microBatchesPerStep: M)
        guard p.usableBatches > 0 else {
            let usable = order.lengths.count - p.droppedTooShort
            let n = order.lengths.count
            throw .notEnoughData(
                usable < M
                    ? "\(usable) of \(n) utterances usable (the rest too short), fewer than the M = \(M) "
                        + "micro-batches of one step"
                    : "\(p.batches.count) micro-batches per epoch (\(usable) of \(n) utterances usable, the rest too "
                        + "short), fewer than one step of M = \(M)"
            )
        }
        guard cursor.microBatch >= 0, cursor.microBatch % M == 0 else {
            throw .badConfig(
                "cursor \(cursor) is not at a step boundary of M = \(M) (resume with world_size × update_freq "
                    + "unchanged)"
            )
        }
        self.plan = p
        self.cursor = cursor
        normalize()
    }

    private mutating func normalize() {
        let M = sharding.microBatchesPerStep
        if cursor.microBatch + M > plan.usableBatches {
            cursor = DataCursor(epoch: cursor.epoch + 1, microBatch: 0)
            plan = order.plan(epoch: cursor.epoch, microBatchesPerStep: M)
        }
    }

    /// All M micro-batches of the next step (every rank's), without advancing.
    public func peekStep() -> [PlannedBatch] {
        Array(plan.batches[cursor.microBatch..<(cursor.microBatch + sharding.microBatchesPerStep)])
    }

    /// This rank's `update_freq` micro-batches of the next step, and the cursor after the step.
    public mutating func nextStep() -> (batches: [PlannedBatch], cursorAfter: DataCursor) {
        let W = sharding.worldSize, start = cursor.microBatch
        let mine = (0..<sharding.updateFreq).map { plan.batches[start + sharding.rank + $0 * W] }
        cursor.microBatch += sharding.microBatchesPerStep
        normalize()
        return (mine, cursor)
    }
}
