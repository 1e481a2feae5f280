// The two losses on the masked frames. Both return un-normalised sums over this
// micro-batch; backward takes lossScale = 1/N_masked of the whole optimizer step.
//   contrastive: L_w = −log softmax_j(cos(Wc·c_t, Wq·q_j)/κ)[positive], j over the positive and K
//                distractors drawn from the same utterance's masked frames (a distractor with the same
//                codes as the positive is excluded); c = last contrastive block's output
//   MLM:         L_m = mean over codebooks g of CE(W_m·m_t [g], id_g), m = last MLM block's output

import Tensor

struct ContrastiveLoss {
    let headContext: LinearPG, headTarget: LinearPG
    let context, yc, yq: FPtr  // [S, d], [S, F], [S, F]
    let normA, normB, cosines, logits, probs, losses: FPtr  // [S], [S], [S, K+1] ×3, [S]
    /// pairs [S, K+1], [S, K], [S], [S, K+1]
    let ia, ib, distractors, zeroTargets, excluded: UnsafeMutablePointer<Int32>
    let dContext, dyc, dyq, dLogits: FPtr  // backward: [S, d], [S, F], [S, F], [S, K+1]
    let d, D, F, K: Int
    let kappa: Float

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        headContext = LinearPG(l, "contrastive_head.context", p, g, a.compute)
        headTarget = LinearPG(l, "contrastive_head.target", p, g, a.compute)
        d = c.model.dim
        D = c.quantizer.dim
        F = c.model.finalDim
        K = c.loss.numNegatives
        kappa = c.loss.kappa
        let s = cap.masked, K1 = K + 1
        context = a.take(s * d)
        yc = a.take(s * F)
        yq = a.take(s * F)
        normA = a.take(s)
        normB = a.take(s)
        cosines = a.take(s * K1)
        logits = a.take(s * K1)
        probs = a.take(s * K1)
        losses = a.take(s)
        ia = a.takeInt32(s * K1)
        ib = a.takeInt32(s * K1)
        distractors = a.takeInt32(s * K)
        zeroTargets = a.takeInt32(s)
        excluded = a.takeInt32(s * K1)
        dContext = a.take(s * d)
        dyc = a.take(s * F)
        dyq = a.take(s * F)
        dLogits = a.take(s * K1)
    }

    /// K distractors per masked frame from the other masked frames of its utterance (−1 when it has none).
    func drawDistractors(frames: MaskedFrames, key: RandomKey, given: [Int32]?) {
        let S = frames.count
        if let given {
            precondition(given.count == S * K, "distractors override has the wrong size")
            given.withUnsafeBufferPointer { distractors.update(from: $0.baseAddress!, count: S * K) }
            return
        }
        var rd = key.stream(.distractors)
        for i in 0..<S {
            let b = Int(frames.utterance[i])
            let start = Int(frames.uttStart[b])
            let cnt = Int(frames.uttCount[b])
            let own = i - start
            for k in 0..<K {
                if cnt < 2 {
                    distractors[i * K + k] = -1
                    continue
                }
                var r = rd.nextInt(cnt - 1)
                if r >= own { r += 1 }
                distractors[i * K + k] = Int32(start + r)
            }
        }
    }

    /// Returns (Σ L_w, frames whose positive beats every valid distractor).
    func forward(
        c: CFPtr, q: CFPtr, ids: UnsafePointer<Int32>, groups G: Int, frames: MaskedFrames, key: RandomKey,
        given: [Int32]?
    ) -> (loss: Double, correct: Int) {
        let S = frames.count, K1 = K + 1
        frames.gather(context, from: c, width: d)
        headContext.forward(y: yc, x: context, n: S, inDim: d, outDim: F)
        headTarget.forward(y: yq, x: q, n: S, inDim: D, outDim: F)
        drawDistractors(frames: frames, key: key, given: given)
        zeroTargets.update(repeating: 0, count: S)  // the positive is candidate 0
        for i in 0..<S {
            ia[i * K1] = Int32(i)
            ib[i * K1] = Int32(i)
            excluded[i * K1] = 0
            for k in 0..<K {
                let j = Int(distractors[i * K + k])
                ia[i * K1 + 1 + k] = Int32(i)
                var ex: Int32 = 1
                if j >= 0 {
                    for g in 0..<G where ids[j * G + g] != ids[i * G + g] {
                        ex = 0
                        break
                    }
                }
                ib[i * K1 + 1 + k] = j < 0 ? Int32(i) : Int32(j)
                excluded[i * K1 + 1 + k] = ex
            }
        }
        cosineForward(
            out: cosines, normA: normA, normB: normB, a: yc, b: yq, ia: ia, ib: ib, n: S * K1, na: S, nb: S,
            dim: F)
        let invKappa = 1 / kappa
        for p in 0..<(S * K1) { logits[p] = excluded[p] != 0 ? -.infinity : cosines[p] * invKappa }
        crossEntropyForward(losses: losses, probs: probs, logits: logits, targets: zeroTargets, n: S, v: K1)
        var sum = 0.0, correct = 0
        for i in 0..<S {
            sum += Double(losses[i])
            let pos = logits[i * K1]
            var ok = true
            for k in 1..<K1 where excluded[i * K1 + k] == 0 && logits[i * K1 + k] >= pos {
                ok = false
                break
            }
            if ok { correct += 1 }
        }
        return (sum, correct)
    }

    /// scale = w_c/N_masked. Writes dContext [S, d] and accumulates into dTargets [S, D].
    func backward(scale: Float, dTargets: FPtr, q: CFPtr, frames: MaskedFrames) {
        let S = frames.count, K1 = K + 1
        for i in 0..<S { losses[i] = scale }  // reused as dLosses (forward values no longer needed)
        zero(dLogits, S * K1)
        crossEntropyBackward(dLogits: dLogits, dLosses: losses, probs: probs, targets: zeroTargets, n: S, v: K1)
        let invKappa = 1 / kappa
        for p in 0..<(S * K1) { dLogits[p] = excluded[p] != 0 ? 0 : dLogits[p] * invKappa }
        zero(dyc, S * F)
        zero(dyq, S * F)
        cosineBackward(
            da: dyc, db: dyq, dOut: dLogits, out: cosines, normA: normA, normB: normB, a: yc, b: yq,
            ia: ia, ib: ib, n: S * K1, dim: F)
        zero(dContext, S * d)
        headContext.backward(dx: dContext, dy: dyc, x: context, n: S, inDim: d, outDim: F)
        headTarget.backward(dx: dTargets, dy: dyq, x: q, n: S, inDim: D, outDim: F)
    }
}

struct MLMLoss {
    let head: LinearPG
    let m, logits, probs, losses: FPtr  // [S, d], [S, G·V], [S, G·V], [S, G]
    let dLogits, dm: FPtr  // backward: [S, G·V], [S, d]
    let d, G, V: Int

    init(_ l: ParameterLayout, _ p: FPtr, _ g: FPtr, _ a: Arena, config c: Config, capacity cap: Capacity) {
        head = LinearPG(l, "mlm_head", p, g, a.compute)
        d = c.model.dim
        G = c.quantizer.groups
        V = c.quantizer.entries
        let s = cap.masked, gv = G * V
        m = a.take(s * d)
        logits = a.take(s * gv)
        probs = a.take(s * gv)
        losses = a.take(s * G)
        dLogits = a.take(s * gv)
        dm = a.take(s * d)
    }

    /// Returns (Σ over frames of the mean over codebooks of L_m, (frame, codebook) pairs with argmax = id).
    func forward(mOut: CFPtr, ids: UnsafePointer<Int32>, frames: MaskedFrames) -> (loss: Double, correct: Int) {
        let S = frames.count, gv = G * V
        frames.gather(m, from: mOut, width: d)
        head.forward(y: logits, x: m, n: S, inDim: d, outDim: gv)
        crossEntropyForward(losses: losses, probs: probs, logits: logits, targets: ids, n: S * G, v: V)
        var sum = 0.0, correct = 0
        for r in 0..<(S * G) {
            sum += Double(losses[r])
            let row = logits + r * V
            var best = 0
            for v in 1..<V where row[v] > row[best] { best = v }
            if best == Int(ids[r]) { correct += 1 }
        }
        return (sum / Double(G), correct)
    }

    /// scale = w_m/N_masked. Writes dm [S, d].
    func backward(scale: Float, ids: UnsafePointer<Int32>, frames: MaskedFrames) {
        let S = frames.count, gv = G * V
        zero(dLogits, S * gv)
        let w = scale / Float(G)
        for r in 0..<(S * G) { losses[r] = w }  // reused as dLosses
        crossEntropyBackward(dLogits: dLogits, dLosses: losses, probs: probs, targets: ids, n: S * G, v: V)
        zero(dm, S * d)
        head.backward(dx: dm, dy: dLogits, x: m, n: S, inDim: d, outDim: gv)
    }
}
