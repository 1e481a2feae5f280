// The objective-independent half of a data-parallel optimizer step, shared by pre-training (TrainStep.swift)
// and CTC fine-tuning: gradients zeroed, each micro-batch's gradient added to an accumulator (g₀ + g₁ + …,
// the sum two ranks form in MPI), every gradient bucket handed to the background all-reduce as soon as the
// last micro-batch's backward has finished it, then the wait, the collective non-finite agreement (all ranks
// skip together), clipping and the AdamW update. The objective runs forward/backward and reduces its own
// step sums between the wait and the agreement (`finish`'s closure).

import Foundation
import Tensor
import Distributed
import W2VBert

/// What the step machinery needs of a model: its flat parameters and gradients, and the gradient buckets in
/// the order its backward finishes them.
public protocol TrainableModel: AnyObject {
    var layout: ParameterLayout { get }
    var params: FloatBuffer { get }
    var grads: FloatBuffer { get }
    var gradientRanges: [Range<Int>] { get }
    func zeroGrads()
}

extension W2VBertModel: TrainableModel {}

/// The update of one step (after its collectives: the same on every rank).
public struct StepUpdate: Sendable {
    public var gradNorm = 0.0
    /// Some rank had a non-finite loss or gradient: nobody updated.
    public var skipped = false
    public var lr: Float = 0
    public var allReduceWaitSeconds = 0.0, allReduceSeconds = 0.0
}

public final class GradientStep {
    public let model: TrainableModel
    public let optimizer: Optimizer
    public let collectives: Collectives
    public let reducer: GradientBucketReducer
    public var updateFreq: Int
    /// Gradient accumulator for update_freq > 1 (allocated on first use).
    var accumulator: FloatBuffer?
    /// Buckets handed to the all-reduce in this step.
    var marked: [Bool] = []

    public init(model: TrainableModel, optimizer: Optimizer, collectives: Collectives, updateFreq: Int) {
        self.model = model
        self.optimizer = optimizer
        self.collectives = collectives
        self.updateFreq = updateFreq
        reducer = GradientBucketReducer(
            collectives: collectives, gradients: model.grads.ptr, buckets: model.gradientRanges)
    }

    /// Zeroed gradients, a fresh reduction.
    public func begin() {
        model.zeroGrads()
        reducer.begin()
        if updateFreq > 1 && accumulator == nil { accumulator = FloatBuffer(count: model.layout.count) }
        marked = [Bool](repeating: false, count: reducer.buckets.count)
    }

    /// Backward of micro-batch `j` finished bucket `b`: on the last micro-batch it is final.
    public func bucketReady(_ b: Int, last: Bool) {
        if last { finishBucket(b) }
    }

    /// Micro-batch `j` is done: an earlier one's gradients go to the accumulator.
    public func microBatchDone(_ j: Int, last: Bool) {
        if !last { accumulate(first: j == 0) }
    }

    /// Micro-batch `j` had no utterances (every file failed to load): it adds nothing.
    public func emptyMicroBatch(_ j: Int, last: Bool) {
        if !last, j == 0 { accumulator?.zero() }
    }

    /// Adds this micro-batch's gradients to the accumulator and zeroes them for the next one.
    func accumulate(first: Bool) {
        guard let a = accumulator else { return }
        let g = model.grads.ptr
        for r in optimizer.ranges {  // the trainable ranges
            if first {
                (a.ptr + r.lowerBound).update(from: g + r.lowerBound, count: r.count)
            } else {
                axpy(a.ptr + r.lowerBound, g + r.lowerBound, n: r.count)
            }
        }
        model.zeroGrads()
    }

    /// Bucket b is final on the last micro-batch: add the earlier micro-batches' part, hand it over.
    func finishBucket(_ b: Int) {
        if updateFreq > 1, let a = accumulator {
            let g = model.grads.ptr
            for i in reducer.buckets[b] { g[i] = a.ptr[i] + g[i] }
        }
        marked[b] = true
        reducer.markReady(b)
    }

    /// Hands over the buckets the last backward did not (e.g. its micro-batch was empty).
    public func handOverRemaining() {
        for b in reducer.buckets.indices where !marked[b] { finishBucket(b) }
    }

    /// Hands over any bucket still pending, waits for the reduction, lets `reduceSums` all-reduce the
    /// objective's sums (returning whether its loss is finite), agrees on a non-finite step, clips and updates.
    public func finish(reduceSums: () throws -> Bool) throws -> StepUpdate {
        handOverRemaining()
        var u = StepUpdate()
        u.allReduceWaitSeconds = try reducer.wait()
        u.allReduceSeconds = reducer.reduceSeconds
        let lossFinite = try reduceSums()
        let norm2 = optimizer.gradSumOfSquares(model.grads)
        var bad: [Int64] = [(norm2.isFinite && lossFinite) ? 0 : 1]
        try collectives.allReduce("non-finite check", &bad, op: .max)
        u.gradNorm = norm2.squareRoot()
        u.skipped = bad[0] != 0
        u.lr = optimizer.learningRate
        if !u.skipped { u.gradNorm = optimizer.update(params: model.params, grads: model.grads, sumOfSquares: norm2) }
        return u
    }
}
