// AdamW with global-norm clipping, the learning-rate schedules and τ (SPEC §7, §11, §14.11, §14.12).
// One pass over the contiguous params / grads / m / v buffers of a ParameterLayout. Matches
// torch.optim.AdamW (decoupled decay p ← p·(1 − lr·wd), bias-corrected moments, eps added to
// √v̂) and torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), only when < 1).

import Tensor

public final class Optimizer {
    public let config: Config
    public let layout: ParameterLayout
    public let m: FloatBuffer, v: FloatBuffer
    /// Optimizer updates done so far (the step of the next update).
    public var step = 0
    /// 1 where weight decay applies, per float of the layout.
    let decayMask: FloatBuffer

    public init(config: Config, layout: ParameterLayout) {
        self.config = config; self.layout = layout
        m = FloatBuffer(count: layout.count); v = FloatBuffer(count: layout.count)
        decayMask = FloatBuffer(count: layout.count)
        for e in layout.entries where e.decay { (decayMask.ptr + e.offset).update(repeating: 1, count: e.count) }
    }

    /// Learning rate and τ of the next update.
    public var learningRate: Float { config.learningRate(step: step) }
    public var tau: Float { config.tau(step: step) }

    /// Global L2 norm of a gradient buffer.
    public static func gradNorm(_ g: FloatBuffer) -> Double { sumOfSquares(g.ptr, n: g.count).squareRoot() }

    /// Scales grads by `scale`, clips to config.optimizer.clip_norm, applies AdamW, advances `step`.
    /// Returns the gradient norm before clipping (after scaling). A non-finite norm skips the update
    /// (and does not advance the step) and returns the norm so the caller can log it.
    @discardableResult
    public func update(params: FloatBuffer, grads: FloatBuffer, scale: Float = 1) -> Double {
        let n = layout.count
        if scale != 1 { Tensor.scale(grads.ptr, scale, n: n) }
        let norm = Optimizer.gradNorm(grads)
        if !norm.isFinite { return norm }
        let clip = config.optimizer.clipNorm
        if clip > 0 {
            let coef = Double(clip) / (norm + 1e-6)
            if coef < 1 { Tensor.scale(grads.ptr, Float(coef), n: n) }
        }
        let lr = learningRate
        let (b1, b2) = config.optimizer.betas
        let t = Double(step + 1)
        let bc1 = 1 - pow(Double(b1), t), bc2 = 1 - pow(Double(b2), t)
        let stepSize = Float(Double(lr) / bc1)
        let invSqrtBc2 = Float(1 / bc2.squareRoot())
        let eps = config.optimizer.eps, wd = config.optimizer.weightDecay
        let p = params.ptr, g = grads.ptr, mm = m.ptr, vv = v.ptr, dm = decayMask.ptr
        parallelChunks(n) { lo, cnt in   // elementwise: the same result on any number of threads
            for i in lo..<(lo + cnt) {
                p[i] *= 1 - lr * wd * dm[i]
                mm[i] = b1 * mm[i] + (1 - b1) * g[i]
                vv[i] = b2 * vv[i] + (1 - b2) * g[i] * g[i]
                p[i] -= stepSize * mm[i] / (vv[i].squareRoot() * invSqrtBc2 + eps)
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
