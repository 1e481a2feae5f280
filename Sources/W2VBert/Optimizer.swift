// AdamW with global-norm clipping, the learning-rate schedules and τ.
// One pass over the trainable ranges of the params / grads buffers of a ParameterLayout (everything, or
// with train.trainable = adapters the adapters only); m / v hold those ranges back to back (no state
// for frozen tensors). Matches
// torch.optim.AdamW (decoupled decay p ← p·(1 − lr·wd), bias-corrected moments, eps added to
// √v̂) and torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), only when < 1).

import Tensor
import CCompute

public final class Optimizer {
    public let config: Config
    public let layout: ParameterLayout
    /// Adam moments of the trainable ranges, back to back (`stateCount` floats).
    public let m: FloatBuffer, v: FloatBuffer
    /// Float ranges of the layout this optimizer updates (layout.trainableRanges).
    public let ranges: [Range<Int>]
    /// Optimizer updates done so far (the step of the next update).
    public var step = 0
    /// The trainable floats as runs with one weight-decay flag and one delayed flag each.
    let segments: [Segment]
    struct Segment {
        var offset: Int  // in the layout
        var count: Int
        var state: Int  // offset in m / v
        var decay: Bool
        var delayed: Bool
    }

    public convenience init(config: Config, layout: ParameterLayout) {
        self.init(config: config, layout: layout, ranges: layout.trainableRanges(config))
    }

    /// An optimizer of the floats in `ranges`. The `delayed` floats (within `ranges`) are not updated by the
    /// first `delayUpdates` updates (fine-tuning's frozen encoder: their parameters and moments stay as they
    /// are); their bias correction then counts their own updates, as if they had joined at update 0.
    public init(
        config: Config, layout: ParameterLayout, ranges: [Range<Int>], delayed: [Range<Int>] = [],
        delayUpdates: Int = 0
    ) {
        self.config = config
        self.layout = layout
        self.ranges = ranges
        self.delayUpdates = delayUpdates
        let n = ranges.reduce(0) { $0 + $1.count }
        m = FloatBuffer(count: n)
        v = FloatBuffer(count: n)
        segments = Optimizer.segments(ranges: ranges, layout: layout, delayed: delayUpdates > 0 ? delayed : [])
    }

    /// Updates that leave the delayed floats alone.
    public let delayUpdates: Int

    /// Splits each range where the decay flag or the delayed flag changes (floats outside every tensor: no decay).
    static func segments(
        ranges: [Range<Int>], layout: ParameterLayout, delayed: [Range<Int>]
    ) -> [Segment] {
        let decayed = layout.entries.filter(\.decay).map { $0.offset..<($0.offset + $0.count) }.sorted {
            $0.lowerBound < $1.lowerBound
        }
        var out: [Segment] = []
        var state = 0
        for r in ranges {
            var cuts = [r.lowerBound, r.upperBound]
            for d in decayed + delayed where d.overlaps(r) {
                cuts += [max(d.lowerBound, r.lowerBound), min(d.upperBound, r.upperBound)]
            }
            cuts = Array(Set(cuts)).sorted()
            for (a, b) in zip(cuts, cuts.dropFirst()) where a < b {
                let decay = decayed.contains { $0.contains(a) }
                let late = delayed.contains { $0.contains(a) }
                if let last = out.last, last.decay == decay, last.delayed == late, last.offset + last.count == a {
                    out[out.count - 1].count += b - a
                } else {
                    out.append(
                        Segment(offset: a, count: b - a, state: state + a - r.lowerBound, decay: decay, delayed: late))
                }
            }
            state += r.count
        }
        return out
    }

    /// Floats of optimizer state per moment.
    public var stateCount: Int { m.count }

    /// Where the layout float `layoutOffset` sits in m / v (nil: frozen).
    public func stateOffset(layoutOffset: Int) -> Int? {
        Optimizer.stateOffset(ranges: ranges, layoutOffset: layoutOffset)
    }

    /// Offset in m / v of layout float `layoutOffset` when `ranges` are the trainable ranges (nil: frozen).
    public static func stateOffset(ranges: [Range<Int>], layoutOffset: Int) -> Int? {
        var base = 0
        for r in ranges {
            if r.contains(layoutOffset) { return base + layoutOffset - r.lowerBound }
            base += r.count
        }
        return nil
    }

    /// The tensors that have optimizer state, each with its offset into m / v.
    public var stateTensors: [(entry: ParameterEntry, offset: Int)] {
        layout.entries.compactMap { e in stateOffset(layoutOffset: e.offset).map { (e, $0) } }
    }

    /// Σ g² over the trainable ranges.
    public func gradSumOfSquares(_ g: FloatBuffer) -> Double {
        ranges.reduce(0.0) { $0 + sumOfSquares(g.ptr + $1.lowerBound, n: $1.count) }
    }

    /// Learning rate and τ of the next update.
    public var learningRate: Float { config.learningRate(step: step) }
    public var tau: Float { config.tau(step: step) }

    /// Global L2 norm of a gradient buffer.
    public static func gradNorm(_ g: FloatBuffer) -> Double { sumOfSquares(g.ptr, n: g.count).squareRoot() }

    /// Scales grads by `scale`, clips to config.optimizer.clip_norm (in the update: grads keeps the unclipped
    /// values), applies AdamW, advances `step`.
    /// Returns the gradient norm before clipping (after scaling). A non-finite norm skips the update
    /// (and does not advance the step) and returns the norm so the caller can log it. `sumOfSquares`: the
    /// caller's `gradSumOfSquares(grads)` when it has one (used only with scale 1; saves a pass).
    @discardableResult
    public func update(
        params: FloatBuffer, grads: FloatBuffer, scale: Float = 1, sumOfSquares known: Double? = nil
    ) -> Double {
        if scale != 1 { for r in ranges { Tensor.scale(grads.ptr + r.lowerBound, scale, n: r.count) } }
        let norm = (scale == 1 ? known : nil).map { $0.squareRoot() } ?? gradSumOfSquares(grads).squareRoot()
        if !norm.isFinite { return norm }
        // Clipping scales the gradient inside the update loop (grads keeps the unclipped values).
        let clip = config.optimizer.clipNorm
        var gc: Float = 1
        if clip > 0 {
            let coef = Double(clip) / (norm + 1e-6)
            if coef < 1 { gc = Float(coef) }
        }
        let lr = learningRate
        let (b1, b2) = config.optimizer.betas
        let eps = config.optimizer.eps, wd = config.optimizer.weightDecay
        for seg in segments {
            if seg.delayed && step < delayUpdates { continue }
            let t = Double(seg.delayed ? step + 1 - delayUpdates : step + 1)
            let bc1 = 1 - pow(Double(b1), t), bc2 = 1 - pow(Double(b2), t)
            let stepSize = Float(Double(lr) / bc1)
            let invSqrtBc2 = Float(1 / bc2.squareRoot())
            let p = params.ptr + seg.offset, g = grads.ptr + seg.offset
            let mm = m.ptr + seg.state, vv = v.ptr + seg.state
            let keep = 1 - lr * (seg.decay ? wd : 0)
            // Elementwise (C, vectorised, exact): the same result on any number of threads.
            parallelChunks(seg.count) { lo, cnt in
                w2v_adamw(p + lo, g + lo, mm + lo, vv + lo, cnt, gc, keep, b1, b2, stepSize, invSqrtBc2, eps)
            }
        }
        step += 1
        return norm
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
