import Audio
import Foundation
import Tensor
import XCTest

/// llm.c's dataloader test, for the global order: synthetic lengths whose expectations are arithmetic.
final class DataOrderTests: XCTestCase {
    // conv2d frontend mapping
    static let conv2d: @Sendable (Int) -> Int = { T0 in max(0, ((T0 - 1) / 2 - 1) / 2) }

    /// 1000 utterances; utterance i has T0 = 10 + (i % 100)·4 fbank frames (n = 400 + 160·(T0 − 1)
    /// samples), except every 10th, which is cropped from a long one (3000 frames) to maxSamples.
    /// L = conv2d(T0) < 12 ⟺ T0 < 51: T0 ∈ {10, 14, …, 50} → i % 100 ∈ 0…10: 11 of every 100 short,
    /// minus the every-10th long ones among them (i % 100 ∈ {0, 10}) → 9 per 100 → 90 too short.
    func makeOrder(seed: UInt64 = 7, balanceSteps: Bool = true) throws -> DataOrder {
        let lengths = (0..<1000).map { i -> Int in
            let T0 = i % 10 == 0 ? 3000 : 10 + (i % 100) * 4
            return 400 + 160 * (T0 - 1)
        }
        let cfg = DataOrderConfig(seed: seed, maxSamples: 400 + 160 * 999, maxFrames: 4000, balanceSteps: balanceSteps)
        return try DataOrder(lengths: lengths, config: cfg, encoderLength: DataOrderTests.conv2d)
    }

    func testFilterAndBudget() throws {
        let order = try makeOrder()
        let plan = order.plan(epoch: 0, microBatchesPerStep: 4)
        XCTAssertEqual(plan.droppedTooShort, 90)
        var seen = [Int]()
        for b in plan.batches {
            XCTAssertLessThanOrEqual(b.paddedFrames, 4000)
            for it in b.items {
                XCTAssertTrue(order.keeps(it.utterance))
                let n = order.lengths[it.utterance]
                XCTAssertEqual(it.samples, min(n, order.config.maxSamples))
                XCTAssertTrue(it.offset >= 0 && it.offset + it.samples <= n)
                if n <= order.config.maxSamples { XCTAssertEqual(it.offset, 0) }
                XCTAssertEqual(it.frames, fbankFrameCount(samples: it.samples))
                seen.append(it.utterance)
            }
        }
        // every kept utterance exactly once in the epoch's list
        XCTAssertEqual(seen.count, 910)
        XCTAssertEqual(Set(seen).count, 910)
        XCTAssertEqual(plan.usableBatches, plan.batches.count / 4 * 4)
        XCTAssertEqual(
            plan.droppedTailUtterances, plan.batches[plan.usableBatches...].reduce(0) { $0 + $1.items.count })
        // cropped ones (1000 frames) are packed 4 per batch
        for b in plan.batches where b.maxFrames == 1000 { XCTAssertLessThanOrEqual(b.items.count, 4) }
        // crops differ across epochs for the same utterance, and the order does too
        let plan1 = order.plan(epoch: 1, microBatchesPerStep: 4)
        XCTAssertEqual(plan1.batches.count, plan.batches.count)
        XCTAssertNotEqual(plan1.batches.map(\.items), plan.batches.map(\.items))
        // same seed, same epoch: identical
        XCTAssertEqual(try makeOrder().plan(epoch: 0, microBatchesPerStep: 4).batches, plan.batches)
        XCTAssertNotEqual(try makeOrder(seed: 8).plan(epoch: 0, microBatchesPerStep: 4).batches, plan.batches)
    }

    /// Step s's micro-batches, as the union over ranks, for world sizes 1, 2, 4 with M = 4.
    func stepSets(worldSize W: Int, steps: Int) throws -> [[Int]] {
        let order = try makeOrder()
        var samplers = try (0..<W).map {
            try DataSampler(order: order, sharding: Sharding(worldSize: W, rank: $0, updateFreq: 4 / W))
        }
        var out = [[Int]]()
        for _ in 0..<steps {
            var ids = [Int]()
            var cursors = Set<DataCursor>()
            for r in 0..<W {
                let (batches, after) = samplers[r].nextStep()
                XCTAssertEqual(batches.count, 4 / W)
                for (k, b) in batches.enumerated() {
                    XCTAssertEqual(b.index % W, r, "rank \(r) takes indices ≡ r mod W")
                    if k > 0 { XCTAssertEqual(b.index, batches[k - 1].index + W) }
                    ids.append(b.epoch * 100_000 + b.index)
                }
                cursors.insert(after)
            }
            XCTAssertEqual(cursors.count, 1, "all ranks agree on the cursor")
            out.append(ids.sorted())
        }
        return out
    }

    func testSameBatchesPerStepForWorldSizes124() throws {
        let order = try makeOrder()
        let steps = order.plan(epoch: 0, microBatchesPerStep: 4).stepsPerEpoch
        let s1 = try stepSets(worldSize: 1, steps: steps + 5)  // crosses into epoch 1
        let s2 = try stepSets(worldSize: 2, steps: steps + 5)
        let s4 = try stepSets(worldSize: 4, steps: steps + 5)
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(s1, s4)
        // step s = micro-batches [4s, 4s + 4) of its epoch
        for (s, ids) in s1.enumerated() {
            let e = s / steps, first = (s % steps) * 4
            XCTAssertEqual(ids, (first..<(first + 4)).map { e * 100_000 + $0 })
        }
    }

    func testEpochCoversEveryKeptUtteranceOnce() throws {
        let order = try makeOrder()
        let plan = order.plan(epoch: 0, microBatchesPerStep: 4)
        var samplers = try (0..<2).map {
            try DataSampler(order: order, sharding: Sharding(worldSize: 2, rank: $0, updateFreq: 2))
        }
        var utts = [Int]()
        for _ in 0..<plan.stepsPerEpoch {
            for r in 0..<2 {
                for b in samplers[r].nextStep().batches {
                    XCTAssertEqual(b.epoch, 0)
                    utts += b.items.map(\.utterance)
                }
            }
        }
        XCTAssertEqual(utts.count, 910 - plan.droppedTailUtterances)
        XCTAssertEqual(Set(utts).count, utts.count, "no utterance repeated within an epoch")
        XCTAssertEqual(samplers[0].cursor, DataCursor(epoch: 1, microBatch: 0), "epoch rolls over")
    }

    func testResumeFromCursorReproducesTheRest() throws {
        let order = try makeOrder()
        let sh = Sharding(worldSize: 2, rank: 1, updateFreq: 2)
        var full = try DataSampler(order: order, sharding: sh)
        var reference = [[PlannedBatch]]()
        var saved: Data? = nil
        let steps = order.plan(epoch: 0, microBatchesPerStep: 4).stepsPerEpoch
        for s in 0..<(steps + 3) {
            let (b, after) = full.nextStep()
            reference.append(b)
            if s == 10 { saved = try JSONEncoder().encode(after) }
        }
        let cursor = try JSONDecoder().decode(DataCursor.self, from: saved!)
        XCTAssertEqual(cursor, DataCursor(epoch: 0, microBatch: 44))
        // resume on a different world size with the same M: rank 1 of 2 ↔ ranks 1 and 3 of 4
        var resumed = try DataSampler(order: order, sharding: sh, cursor: cursor)
        var r4 = try [1, 3].map {
            try DataSampler(order: order, sharding: Sharding(worldSize: 4, rank: $0, updateFreq: 1), cursor: cursor)
        }
        for s in 11..<(steps + 3) {
            let b = resumed.nextStep().batches
            XCTAssertEqual(b, reference[s], "step \(s)")
            let b4 = (r4[0].nextStep().batches + r4[1].nextStep().batches).sorted { $0.index < $1.index }
            XCTAssertEqual(b4, reference[s])
        }
        XCTAssertThrowsError(try DataSampler(order: order, sharding: sh, cursor: DataCursor(epoch: 0, microBatch: 3)))
    }

    func testConfigAndNotEnoughDataErrors() throws {
        XCTAssertThrowsError(
            try DataOrder(
                lengths: [16000], config: DataOrderConfig(seed: 1, maxSamples: 160_000, maxFrames: 500),
                encoderLength: DataOrderTests.conv2d))
        let order = try DataOrder(
            lengths: [16000, 16000, 100], config: DataOrderConfig(seed: 1, maxSamples: 16000, maxFrames: 100),
            encoderLength: DataOrderTests.conv2d)
        XCTAssertThrowsError(try DataSampler(order: order, sharding: Sharding(worldSize: 4, rank: 0, updateFreq: 1))) {
            e in
            XCTAssertTrue("\(e)".contains("micro-batches of one step"), "\(e)")
            XCTAssertTrue("\(e)".contains("2 of 3 utterances usable"), "\(e)")
        }
        // 4 short utterances fill one greedy micro-batch (less than a step of 2); balance_steps deals them into 2
        let four = [Int](repeating: 400 + 160 * 59, count: 4)
        let plain = try DataOrder(
            lengths: four, config: DataOrderConfig(seed: 1, maxSamples: 16000, maxFrames: 1000, balanceSteps: false),
            encoderLength: DataOrderTests.conv2d)
        XCTAssertThrowsError(try DataSampler(order: plain, sharding: Sharding(worldSize: 2, rank: 0, updateFreq: 1))) {
            e in
            XCTAssertTrue(
                "\(e)".contains(
                    "1 micro-batches per epoch (4 of 4 utterances usable, the rest too short), fewer than one step of M = 2"
                ), "\(e)")
        }
        let dealt = try DataOrder(
            lengths: four, config: DataOrderConfig(seed: 1, maxSamples: 16000, maxFrames: 1000),
            encoderLength: DataOrderTests.conv2d)
        XCTAssertEqual(
            try DataSampler(order: dealt, sharding: Sharding(worldSize: 2, rank: 1, updateFreq: 1)).plan.batches.map(
                \.items.count), [2, 2])
    }

    /// Each step's micro-batch costs (padded frames, DataOrder's default cost), in step order.
    func stepCosts(_ plan: EpochPlan) -> [[Double]] {
        let M = plan.microBatchesPerStep
        return (0..<plan.stepsPerEpoch).map { s in plan.batches[(s * M)..<((s + 1) * M)].map { Double($0.paddedFrames) }
        }
    }

    /// balance_steps: a step's M micro-batches are neighbours in cost (the steps' cost ranges do not
    /// interleave), over the same micro-batches as without it, with steps still in random order; the tail
    /// varies by epoch; M = 1 is unchanged.
    func testBalanceStepsMakesStepsOfCostNeighbours() throws {
        let balanced = try makeOrder(), plain = try makeOrder(balanceSteps: false)
        for M in [2, 3, 4] {
            for epoch in 0..<3 {
                let a = balanced.plan(epoch: epoch, microBatchesPerStep: M),
                    b = plain.plan(epoch: epoch, microBatchesPerStep: M)
                // every survivor, once, none skipped
                let utts = a.batches.flatMap { $0.items.map(\.utterance) }
                XCTAssertEqual(utts.count, 910)
                XCTAssertEqual(Set(utts), Set(b.batches.flatMap { $0.items.map(\.utterance) }))
                XCTAssertEqual(a.batches.count % M, 0)
                XCTAssertEqual(a.usableBatches, a.batches.count)
                XCTAssertEqual(a.droppedTailUtterances, 0)
                XCTAssertEqual(
                    a.batches.count, balanced.plan(epoch: 0, microBatchesPerStep: M).batches.count,
                    "K is the same every epoch")
                for mb in a.batches { XCTAssertLessThanOrEqual(mb.paddedFrames, 4000) }
                // the point: no waiting for a costlier micro-batch of a step
                XCTAssertLessThan(balanced.stepImbalance(a), 1.01)
                XCTAssertGreaterThan(
                    plain.stepImbalance(b), balanced.stepImbalance(a) + 0.01,
                    "without balance_steps a step mixes costs (else this test proves nothing)")
            }
            // the steps come in a different order every epoch
            XCTAssertNotEqual(
                balanced.plan(epoch: 0, microBatchesPerStep: M).batches.map { $0.items.map(\.utterance) },
                balanced.plan(epoch: 1, microBatchesPerStep: M).batches.map { $0.items.map(\.utterance) })
        }
        XCTAssertEqual(
            balanced.plan(epoch: 2, microBatchesPerStep: 1).batches,
            plain.plan(epoch: 2, microBatchesPerStep: 1).batches)
    }

    /// The longest utterances end in a part-filled greedy micro-batch; balance_steps deals them, with the
    /// last whole run's, into micro-batches of equal size instead of pairing it with a full one.
    func testBalanceStepsDealsThePartFilledEnd() throws {
        // 41 of 1000 frames (4 per micro-batch of 4000): 10 full greedy micro-batches and one of 1
        let order = try DataOrder(
            lengths: (0..<300).map { 400 + 160 * ($0 < 259 ? 100 + $0 : 999) },
            config: DataOrderConfig(seed: 9, maxSamples: 400 + 160 * 999, maxFrames: 4000),
            encoderLength: DataOrderTests.conv2d)
        let plain = order.plan(epoch: 0, microBatchesPerStep: 1)
        XCTAssertEqual(plain.batches.filter { $0.maxFrames == 1000 }.map(\.items.count).sorted().first, 1)
        for M in [2, 3, 4] {
            let p = order.plan(epoch: 0, microBatchesPerStep: M)
            XCTAssertEqual(p.droppedTailUtterances, 0)
            XCTAssertEqual(p.batches.flatMap { $0.items.map(\.utterance) }.sorted(), Array(0..<300))
            XCTAssertEqual(p.batches.filter { $0.maxFrames == 1000 }.map(\.items.count).reduce(0, +), 41)
            // no step pairs a part-filled micro-batch with full ones (an empty one ends the last run)
            for (s, c) in stepCosts(p).enumerated() {
                let filled = c.filter { $0 > 0 }
                XCTAssertGreaterThanOrEqual(filled.min()! / filled.max()!, 0.5, "M \(M) step \(s): \(c)")
            }
        }
    }

    /// No micro-batch position (rank) always gets the costlier micro-batch of a step: runs of cost
    /// neighbours alternate their order, dealt runs deal back and forth. Distinct lengths: no ties.
    func testBalanceStepsFavoursNoRank() throws {
        let order = try DataOrder(
            lengths: (0..<600).map { 400 + 160 * (60 + $0) },
            config: DataOrderConfig(seed: 5, maxSamples: 400 + 160 * 700, maxFrames: 4000),
            encoderLength: DataOrderTests.conv2d)
        for M in [2, 4] {
            let p = order.plan(epoch: 0, microBatchesPerStep: M)
            var lastCostlier = 0, firstCostlier = 0
            for c in stepCosts(p) {
                if c[M - 1] > c[0] { lastCostlier += 1 } else if c[0] > c[M - 1] { firstCostlier += 1 }
            }
            XCTAssertGreaterThan(
                min(lastCostlier, firstCostlier), p.stepsPerEpoch / 4,
                "M \(M): last costlier \(lastCostlier), first costlier \(firstCostlier)")
        }
    }

    /// The last run of the sorted list may hold fewer than M utterances: its missing micro-batches are empty.
    func testBalanceStepsShortLastRun() throws {
        // 5 utterances of 98 frames, max_frames 100: one per micro-batch, M = 4 → runs of 4 and 1
        let order = try DataOrder(
            lengths: [Int](repeating: 16000, count: 5),
            config: DataOrderConfig(seed: 3, maxSamples: 16000, maxFrames: 100),
            encoderLength: DataOrderTests.conv2d)
        let p = order.plan(epoch: 0, microBatchesPerStep: 4)
        XCTAssertEqual(p.batches.count, 8)
        XCTAssertEqual(p.stepsPerEpoch, 2)
        XCTAssertEqual(p.batches.map(\.items.count).sorted(), [0, 0, 0, 1, 1, 1, 1, 1])
        XCTAssertEqual(Set(p.batches.flatMap { $0.items.map(\.utterance) }), Set(0..<5))
    }
}
