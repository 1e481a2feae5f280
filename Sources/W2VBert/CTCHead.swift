// The CTC head on the encoder output y [N, d]:
//   h = Dropout(y) (model.final_dropout, training only),  logits = ctc_head(h) [N, V] (= [B, T, V]),
//   loss_b = CTC(logits_b[0 ..< T_b], labels_b)  (Tensor/CTC.swift; blank 0)
// Forward (training) also computes ∂(Σ_b loss_b / L_b)/∂logits for the utterances with a possible alignment;
// backward scales it by lossScale. An utterance without labels (L_b = 0) contributes nothing; one with
// L_b > T_b or no alignment at all is impossible: loss zeroed, no gradient, counted.

import Tensor

/// Per-micro-batch results of the CTC model (sums over this micro-batch).
public struct CTCStats: Sendable {
    public var lossSum = 0.0  // Σ over this micro-batch's utterances of loss_b / targetLength_b (finite ones)
    public var utterances = 0  // utterances with a label in this micro-batch
    public var infinite = 0  // impossible alignments (zeroed, counted)
    public var frames = 0  // encoder frames (Σ T_b)
    public init() {}
    /// The mean loss of this micro-batch alone: lossSum / utterances.
    public var meanLoss: Double { lossSum / Double(max(utterances, 1)) }
}

struct CTCHead {
    let head: LinearPG
    let dropMask, hidden, logits, dLogits: FPtr  // [N, d], [N, d], [N, V], [N, V]
    let dHidden, dInput: FPtr  // [N, d] ∂/∂h, ∂/∂y
    let losses, scales: FPtr  // [B], [B]
    let inputLengths, labelLengths, labels: UnsafeMutablePointer<Int32>  // [B], [B], [N] (the CTC call's)
    let scratch: FPtr
    let scratchCount: Int
    let d, vocab: Int
    let dropout: Float
    /// State of the last forward: dropout applied; dLogits holds an unscaled gradient backward may use.
    private(set) var dropped = false
    private(set) var pending = false

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        head = LinearPG(l, "ctc_head", p, g, a.compute)
        d = c.model.dim
        vocab = c.model.vocabSize
        dropout = c.model.finalDropout
        let n = cap.n
        dropMask = a.take(dropout > 0 ? n * d : 1)
        hidden = a.take(n * d)
        logits = a.take(n * vocab)
        dLogits = a.take(n * vocab)
        dHidden = a.take(n * d)
        dInput = a.take(n * d)
        losses = a.take(cap.batch)
        scales = a.take(cap.batch)
        inputLengths = a.takeInt32(cap.batch)
        labelLengths = a.takeInt32(cap.batch)
        labels = a.takeInt32(n)
        // ctcScratchCount for any B·T ≤ N with labels no longer than their T ≤ cap.t: per utterance
        // T + T·S + S + V Doubles, S = 2L + 1 ≤ 2T + 1.
        let s = 2 * cap.t + 1
        scratchCount = cap.batch + 2 + 2 * (n * (1 + s) + cap.batch * (s + vocab))
        scratch = a.take(scratchCount)
    }

    /// logits of y (dropout when `training`); `rng` continues the blocks' dropout stream.
    mutating func project(_ y: CFPtr, n: Int, training: Bool, rng: inout DropoutSource) {
        dropped = training && dropout > 0
        if dropped {
            rng.fill(dropMask, n: n * d, p: dropout)
            dropoutForward(y: hidden, x: y, mask: dropMask, n: n * d)
        } else {
            hidden.update(from: y, count: n * d)
        }
        head.forward(y: logits, x: hidden, n: n, inDim: d, outDim: vocab)
        pending = false
    }

    /// CTC losses of the logits (and with `gradient`, dLogits = ∂(Σ loss_b / L_b)/∂logits).
    mutating func loss(
        encoderLengths: UnsafePointer<Int32>, labels given: UnsafePointer<Int32>,
        labelLengths givenLengths: UnsafePointer<Int32>, _ s: BatchShape, gradient: Bool
    ) -> CTCStats {
        var stats = CTCStats()
        var offset = 0, copied = 0, longest = 0
        for b in 0..<s.b {
            let count = Int(givenLengths[b]), frames = Int(encoderLengths[b])
            precondition(count >= 0, "CTC: negative label length \(count)")
            stats.frames += frames
            // Labelled and no longer than its frames: into the CTC call; otherwise 0 frames and no labels.
            let used = count > 0 && count <= frames
            inputLengths[b] = used ? Int32(frames) : 0
            labelLengths[b] = used ? Int32(count) : 0
            scales[b] = used ? 1 / Float(count) : 0
            if used {
                (labels + copied).update(from: given + offset, count: count)
                copied += count
                longest = max(longest, count)
            }
            if count > 0 { stats.utterances += 1 }
            if count > frames { stats.infinite += 1 }
            offset += count
        }
        precondition(
            ctcScratchCount(batch: s.b, frames: s.t, vocab: vocab, maxLabelLength: longest) <= scratchCount,
            "CTC scratch too small")
        if gradient { zero(dLogits, s.n * vocab) }
        ctcForwardBackward(
            losses: losses, dLogits: gradient ? dLogits : nil, logits: logits, gradScales: scales,
            inputLengths: inputLengths, labels: labels, labelLengths: labelLengths, batch: s.b, frames: s.t,
            vocab: vocab, maxLabelLength: longest, scratch: scratch)
        for b in 0..<s.b where labelLengths[b] > 0 {
            if losses[b] == .infinity {
                stats.infinite += 1
            } else {
                stats.lossSum += Double(losses[b]) / Double(labelLengths[b])
            }
        }
        pending = gradient
        return stats
    }

    /// dLogits scaled by lossScale → the head's gradients and (with `input`) dInput = ∂/∂y [N, d].
    mutating func backward(lossScale: Float, input: Bool, n: Int) {
        precondition(pending, "CTCModel.backward needs a forward with training true before it")
        pending = false
        for i in 0..<(n * vocab) { dLogits[i] *= lossScale }
        guard input else {
            head.backward(dx: nil, dy: dLogits, x: hidden, n: n, inDim: d, outDim: vocab)
            return
        }
        zero(dHidden, n * d)
        head.backward(dx: dHidden, dy: dLogits, x: hidden, n: n, inDim: d, outDim: vocab)
        if dropped {
            zero(dInput, n * d)
            dropoutBackward(dx: dInput, dy: dHidden, mask: dropMask, n: n * d)
        } else {
            dInput.update(from: dHidden, count: n * d)
        }
    }
}
