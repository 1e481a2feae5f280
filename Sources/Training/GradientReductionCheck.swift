import Foundation
import Tensor
import Distributed

/// The data-parallel plumbing checked on a real job (`w2vbert check dist`): the bucketed background
/// all-reduce gives exact sums, and optionally the all-reduce bandwidth at 1, 16 and 64 MB. Every rank
/// must run it with the same settings.
public struct GradientReductionCheck {
    /// Floats in the gradient buffer; floats per bucket.
    public var floats = 1_000_000
    public var bucketFloats = 250_000
    /// Also time all-reduce at 1, 16 and 64 MB.
    public var bandwidth = false

    public init() {}

    /// The result of one rank.
    public struct Result {
        public let buckets: Int
        /// Largest |sum − expected| over three steps (0: exact).
        public let maxError: Float
        /// (megabytes, GB/s) per size timed.
        public let bandwidth: [(megabytes: Int, gigabytesPerSecond: Double)]
    }

    /// Three steps of the bucketed all-reduce over `collectives`: element i of rank r holds
    /// (i mod 1000)·(r + 1) + step, so the sum over n ranks is (i mod 1000)·n(n+1)/2 + step·n.
    public func run(_ coll: Collectives) throws -> Result {
        let g = FloatBuffer(count: floats)
        let tensors = stride(from: 0, to: floats, by: 10_000).map { $0..<min(floats, $0 + 10_000) }
        let plan = GradientBucketReducer.plan(tensorRanges: tensors, bucketFloats: bucketFloats)
        let reducer = GradientBucketReducer(collectives: coll, gradients: g.ptr, buckets: plan)
        let n = coll.size
        var worst: Float = 0
        for step in 0..<3 {
            for i in 0..<floats { g[i] = Float((i % 1000) * (coll.rank + 1) + step) }
            reducer.begin()
            for b in reducer.buckets.indices { reducer.markReady(b) }
            try reducer.wait()
            for i in 0..<floats {
                let expect = Float((i % 1000) * n * (n + 1) / 2 + step * n)
                worst = max(worst, abs(g[i] - expect))
            }
        }
        var speeds: [(Int, Double)] = []
        if bandwidth {
            for mb in [1, 16, 64] {
                let count = mb * 262_144
                let b = FloatBuffer(count: count)
                let t = medianTime(repeats: 5) {
                    try? coll.allReduce("bandwidth \(mb) MB", b.ptr, count: count, type: .float, op: .sum)
                }
                speeds.append((mb, Double(count * 4) / t / 1e9))
            }
        }
        try coll.barrier("final barrier")
        return Result(buckets: reducer.buckets.count, maxError: worst, bandwidth: speeds)
    }
}
