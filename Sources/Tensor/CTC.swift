#if canImport(Glibc)
    import Glibc
#endif

// Connectionist temporal classification (Graves et al. 2006): the loss of CTC fine-tuning.
//
// B = batch, T = frames (the padded length of the logits), V = vocabulary size (blank = 0), T_b = the input
// length of utterance b (its rows t ≥ T_b are padding), l = its label sequence (L = |l| labels, each in
// 1..<V), S = 2L + 1 = the extended sequence l' = (blank, l₁, blank, l₂, …, l_L, blank).
//
// With lp[t, k] = log_softmax(logits[b, t])[k], in log space:
//   α_0(0) = lp[0, blank], α_0(1) = lp[0, l₁], α_0(s) = −∞ otherwise;
//   α_t(s) = lp[t, l'_s] + logsumexp(α_{t−1}(s), α_{t−1}(s−1), α_{t−1}(s−2) if l'_s ≠ blank and l'_s ≠ l'_{s−2});
//   loss_b = −log p(l | x) = −logsumexp(α_{T_b−1}(S−1), α_{T_b−1}(S−2)).
//   β_{T_b−1}(s) = 0 for s ∈ {S−1, S−2}, −∞ otherwise (β excludes the emission at its own frame);
//   β_{t−1}(s) = logsumexp over s' ∈ {s, s+1, s+2 (the same skip rule at s')} of lp[t, l'_{s'}] + β_t(s').
// The occupation posterior γ_t(s) = exp(α_t(s) + β_t(s) + loss_b), and the gradient of loss_b with respect to
// the logits is the closed form  ∂loss_b/∂logits[b, t, k] = softmax(logits[b, t])[k] − Σ_{s: l'_s = k} γ_t(s)
// for t < T_b, and 0 for the padding rows.
//
// An alignment is possible only if T_b ≥ L + (the number of adjacent equal labels): each repeat needs a blank
// between its two copies ("aa" takes at least 3 frames). An impossible one has p = 0, an infinite loss; like
// torch's `zero_infinity=True` it then contributes no gradient, and `ctcLossMean` zeroes its loss and counts it.
// T_b = 0: the loss is 0 for an empty label sequence and +∞ otherwise.
//
// Precision: logits and gradients are Float; logZ, α, β and the posteriors are Double. α and β reach the size
// of the loss (hundreds for a few seconds of speech), where a Float's spacing is ~3e-5 and the rounding of T
// additions shifted γ = exp(α + β + loss) by ~1e-3 relative in Float (300 frames, 100 labels); in Double the
// losses match a Double reference to Float rounding and the gradients to ~1e-6 relative. The recursions cost
// O(T·S) per utterance, little beside the encoder that produced the logits.
//
// Scratch (caller-owned, e.g. carved from the arena; `ctcScratchCount` floats): B gradient scales for
// `ctcLossMean`, then, 8-byte aligned, per utterance the Doubles logZ[T], α[T, S], one β row [S] and a posterior
// row [V]. Utterances run in parallel (one per part of `parallelFor`) with the same arithmetic as serially, so
// the results do not depend on the thread count.

/// Floats of scratch that `ctcForwardBackward` and `ctcLossMean` need for this batch shape.
public func ctcScratchCount(batch: Int, frames: Int, vocab: Int, maxLabelLength: Int) -> Int {
    batch + 1 + 2 * batch * ctcUtteranceDoubles(frames: frames, vocab: vocab, maxLabelLength: maxLabelLength)
}

@inline(__always)
func ctcUtteranceDoubles(frames: Int, vocab: Int, maxLabelLength: Int) -> Int {
    let s = 2 * maxLabelLength + 1
    return frames + frames * s + s + vocab
}

/// The fewest frames that can carry `labels` under CTC: one per label plus a blank between each pair of equal
/// adjacent labels.
public func ctcMinimumFrames<C: Collection>(_ labels: C) -> Int where C.Element == Int32 {
    var repeats = 0
    var previous: Int32? = nil
    for l in labels {
        if l == previous { repeats += 1 }
        previous = l
    }
    return labels.count + repeats
}

/// Per-utterance CTC losses and (optionally) their scaled gradient.
///
/// logits [B, T, V] unnormalised, row-major; inputLengths [B] (each in 0...T); labels: the label sequences one
/// after another (Σ labelLengths values, each in 1..<V); labelLengths [B] (each ≤ maxLabelLength).
/// Writes losses[b] = −log p(l_b | logits_b) (+∞ when no alignment exists). When dLogits is given,
/// **accumulates** dLogits[b, t, :] += gradScales[b] · ∂losses[b]/∂logits[b, t, :] (gradScales nil: 1) for
/// t < T_b and finite losses[b]; padding rows and impossible utterances are left untouched. scratch:
/// `ctcScratchCount` floats (its first B are not used here; `ctcLossMean` keeps its gradient scales there).
public func ctcForwardBackward(
    losses: FPtr, dLogits: FPtr?, logits: CFPtr, gradScales: CFPtr?,
    inputLengths: UnsafePointer<Int32>, labels: UnsafePointer<Int32>,
    labelLengths: UnsafePointer<Int32>, batch: Int, frames: Int, vocab: Int,
    maxLabelLength: Int, scratch: FPtr
) {
    let per = ctcUtteranceDoubles(frames: frames, vocab: vocab, maxLabelLength: maxLabelLength)
    var start = scratch + batch
    if Int(bitPattern: start) % MemoryLayout<Double>.alignment != 0 { start += 1 }
    start.withMemoryRebound(to: Double.self, capacity: batch * per) { work in
        parallelFor(batch) { lo, hi in
            var offset = 0
            for b in 0..<lo { offset += Int(labelLengths[b]) }
            for b in lo..<hi {
                let u = CTCUtterance(
                    logits: logits + b * frames * vocab, frames: Int(inputLengths[b]),
                    labels: labels + offset, count: Int(labelLengths[b]), vocab: vocab)
                precondition(u.frames >= 0 && u.frames <= frames, "CTC: input length \(u.frames) outside 0...\(frames)")
                precondition(
                    u.count >= 0 && u.count <= maxLabelLength,
                    "CTC: label length \(u.count) outside 0...\(maxLabelLength)")
                for i in 0..<u.count {
                    let l = u.labels[i]
                    precondition(l > 0 && Int(l) < vocab, "CTC: label \(l) outside 1..<\(vocab)")
                }
                let space = work + b * per
                let logZ = space, alpha = space + frames
                let beta = alpha + frames * u.states, posterior = beta + u.states
                let loss = u.forward(logZ: logZ, alpha: alpha)
                losses[b] = Float(loss)
                if let dLogits, loss != .infinity {
                    u.backward(
                        dLogits: dLogits + b * frames * vocab, scale: gradScales?[b] ?? 1, loss: loss,
                        logZ: logZ, alpha: alpha, beta: beta, posterior: posterior)
                }
                offset += u.count
            }
        }
    }
}

/// `torch.nn.functional.ctc_loss(logits.log_softmax(-1), …, blank=0, reduction='mean', zero_infinity=True)`:
/// the mean over the batch of losses[b] / max(L_b, 1), where impossible utterances count as 0 (their losses[b]
/// is set to 0 and they get no gradient). With dLogits, **accumulates** lossScale · ∂mean/∂logits (rows t ≥ T_b
/// untouched). Returns the mean (before lossScale) and how many utterances were impossible.
@discardableResult
public func ctcLossMean(
    losses: FPtr, dLogits: FPtr?, logits: CFPtr, inputLengths: UnsafePointer<Int32>,
    labels: UnsafePointer<Int32>, labelLengths: UnsafePointer<Int32>, batch: Int, frames: Int,
    vocab: Int, maxLabelLength: Int, lossScale: Float = 1,
    scratch: FPtr
) -> (loss: Float, impossible: Int) {
    if batch == 0 { return (0, 0) }
    let scales = scratch
    for b in 0..<batch { scales[b] = lossScale / (Float(max(Int(labelLengths[b]), 1)) * Float(batch)) }
    ctcForwardBackward(
        losses: losses, dLogits: dLogits, logits: logits, gradScales: scales,
        inputLengths: inputLengths, labels: labels, labelLengths: labelLengths, batch: batch,
        frames: frames, vocab: vocab, maxLabelLength: maxLabelLength, scratch: scratch)
    var sum = 0.0
    var impossible = 0
    for b in 0..<batch {
        if losses[b] == .infinity {
            losses[b] = 0
            impossible += 1
        }
        sum += Double(losses[b]) / Double(max(Int(labelLengths[b]), 1))
    }
    return (Float(sum / Double(batch)), impossible)
}

typealias DPtr = UnsafeMutablePointer<Double>

/// log(eᵃ + eᵇ), exact for −∞ operands.
@inline(__always)
func logAddExp(_ a: Double, _ b: Double) -> Double {
    let m = max(a, b)
    if m == -.infinity { return m }
    return m + log1p(exp(-abs(a - b)))
}

/// One utterance: its logits rows, input length and labels.
struct CTCUtterance {
    let logits: CFPtr  // [T, V] (this utterance's rows; T_b of them are used)
    let frames: Int  // T_b
    let labels: UnsafePointer<Int32>
    let count: Int  // L
    let vocab: Int

    var states: Int { 2 * count + 1 }

    /// l'_s: blank at even s, the label at odd s.
    @inline(__always) func symbol(_ s: Int) -> Int { s & 1 == 0 ? 0 : Int(labels[s >> 1]) }

    /// Whether α may skip from s − 2 to s (a label different from the previous label).
    @inline(__always) func skips(_ s: Int) -> Bool { s & 1 == 1 && s >= 3 && labels[s >> 1] != labels[(s >> 1) - 1] }

    /// logZ[t] = logsumexp(logits[t, :]) for t < T_b; fills α[T_b, S]; returns the loss (+∞: impossible).
    func forward(logZ: DPtr, alpha: DPtr) -> Double {
        if frames == 0 { return count == 0 ? 0 : .infinity }
        let s = states
        for t in 0..<frames {
            let row = logits + t * vocab
            var m = -Float.infinity
            for k in 0..<vocab { m = max(m, row[k]) }
            var sum = 0.0
            for k in 0..<vocab { sum += exp(Double(row[k] - m)) }
            logZ[t] = Double(m) + log(sum)
        }
        alpha.update(repeating: -.infinity, count: s)
        alpha[0] = Double(logits[0]) - logZ[0]
        if s > 1 { alpha[1] = Double(logits[symbol(1)]) - logZ[0] }
        for t in 1..<frames {
            let prev = alpha + (t - 1) * s, cur = alpha + t * s, row = logits + t * vocab
            for j in 0..<s {
                var m = prev[j]
                if j > 0 { m = logAddExp(m, prev[j - 1]) }
                if skips(j) { m = logAddExp(m, prev[j - 2]) }
                cur[j] = m == -.infinity ? m : m + (Double(row[symbol(j)]) - logZ[t])
            }
        }
        let last = alpha + (frames - 1) * s
        return -(s > 1 ? logAddExp(last[s - 1], last[s - 2]) : last[s - 1])
    }

    /// Accumulates scale · (softmax − Σγ) into dLogits rows t < T_b, walking β from the last frame back.
    func backward(dLogits: FPtr, scale: Float, loss: Double, logZ: DPtr, alpha: DPtr, beta: DPtr, posterior: DPtr) {
        let s = states
        beta.update(repeating: -.infinity, count: s)
        beta[s - 1] = 0
        if s > 1 { beta[s - 2] = 0 }
        for t in stride(from: frames - 1, through: 0, by: -1) {
            let row = logits + t * vocab, a = alpha + t * s, d = dLogits + t * vocab
            posterior.update(repeating: 0, count: vocab)
            for j in 0..<s {
                let g = a[j] + beta[j] + loss
                if g != -.infinity { posterior[symbol(j)] += exp(g) }
            }
            for k in 0..<vocab { d[k] += scale * Float(exp(Double(row[k]) - logZ[t]) - posterior[k]) }
            if t == 0 { break }
            // β_{t−1}(s) from e(s) = lp[t, l'_s] + β_t(s), in place: position s reads only e(s…s+2).
            for j in 0..<s where beta[j] != -.infinity { beta[j] += Double(row[symbol(j)]) - logZ[t] }
            for j in 0..<s {
                var m = beta[j]
                if j + 1 < s { m = logAddExp(m, beta[j + 1]) }
                if j + 2 < s && skips(j + 2) { m = logAddExp(m, beta[j + 2]) }
                beta[j] = m
            }
        }
    }
}
