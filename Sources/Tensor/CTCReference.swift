#if canImport(Glibc)
    import Glibc
#endif

/// The Double references of the CTC kernel (tests only), written independently of `CTCUtterance`: full α and
/// β matrices with β including the emission at its own frame (γ_t(s) = α_t(s)·β_t(s) / (p·y_t(l'_s))), and a
/// brute-force sum over every path for tiny cases. Shapes as in CTC.swift; labels one array per utterance.
public enum CTCReference {
    /// Per-utterance losses (+∞ when impossible) and the gradient Σ_b w_b·∂loss_b/∂logits (w nil: all 1;
    /// impossible utterances and padding rows contribute 0).
    public static func lossesAndGradient(
        logits: [Double], inputLengths: [Int], labels: [[Int32]], frames: Int,
        vocab: Int, weights: [Double]? = nil
    ) -> (losses: [Double], gradient: [Double]) {
        var losses = [Double](repeating: 0, count: labels.count)
        var gradient = [Double](repeating: 0, count: logits.count)
        for b in labels.indices {
            let rows = Array(logits[(b * frames * vocab)..<((b + 1) * frames * vocab)])
            let (loss, g) = utterance(logits: rows, frames: inputLengths[b], vocab: vocab, labels: labels[b])
            losses[b] = loss
            if loss == .infinity { continue }
            let w = weights?[b] ?? 1
            for i in g.indices { gradient[b * frames * vocab + i] += w * g[i] }
        }
        return (losses, gradient)
    }

    /// torch's `ctc_loss(reduction='mean', zero_infinity=True)` in Double: mean_b(loss_b / max(L_b, 1)) with
    /// impossible utterances counted as 0, and its gradient.
    public static func mean(
        logits: [Double], inputLengths: [Int], labels: [[Int32]], frames: Int,
        vocab: Int
    ) -> (loss: Double, gradient: [Double]) {
        let n = Double(labels.count)
        let w = labels.map { 1 / (Double(max($0.count, 1)) * n) }
        let (losses, gradient) = lossesAndGradient(
            logits: logits, inputLengths: inputLengths, labels: labels,
            frames: frames, vocab: vocab, weights: w)
        let total = zip(losses, w).reduce(0.0) { $0 + ($1.0 == .infinity ? 0 : $1.0 * $1.1) }
        return (total, gradient)
    }

    /// −log Σ over all V^T paths whose collapse (merge repeats, drop blanks) is `labels` of Π_t softmax.
    /// Exponential: for T·log V small (tests only). logits [T, V].
    public static func bruteForce(logits: [Double], frames: Int, vocab: Int, labels: [Int32]) -> Double {
        let lp = logSoftmax(logits, frames: frames, vocab: vocab)
        var total = 0.0
        var path = [Int](repeating: 0, count: frames)
        var paths = 1
        for _ in 0..<frames { paths *= vocab }
        for code in 0..<paths {
            var c = code
            for t in 0..<frames {
                path[t] = c % vocab
                c /= vocab
            }
            var collapsed: [Int32] = []
            var logP = 0.0
            for t in 0..<frames {
                logP += lp[t * vocab + path[t]]
                if path[t] != 0 && (t == 0 || path[t] != path[t - 1]) { collapsed.append(Int32(path[t])) }
            }
            if collapsed == labels { total += exp(logP) }
        }
        return -log(total)
    }

    static func logSoftmax(_ x: [Double], frames: Int, vocab: Int) -> [Double] {
        var y = x
        for t in 0..<frames {
            let row = x[(t * vocab)..<((t + 1) * vocab)]
            let m = row.max()!
            let z = m + log(row.reduce(0.0) { $0 + exp($1 - m) })
            for k in 0..<vocab { y[t * vocab + k] = x[t * vocab + k] - z }
        }
        return y
    }

    static func logSumExp(_ v: [Double]) -> Double {
        let m = v.max() ?? -.infinity
        if m == -.infinity { return m }
        return m + log(v.reduce(0.0) { $0 + exp($1 - m) })
    }

    /// One utterance: logits [≥ frames, V] (rows past `frames` ignored); the loss and ∂loss/∂logits.
    static func utterance(logits: [Double], frames: Int, vocab: Int, labels: [Int32]) -> (Double, [Double]) {
        var grad = [Double](repeating: 0, count: logits.count)
        if frames == 0 { return (labels.isEmpty ? 0 : .infinity, grad) }
        var ext: [Int] = [0]
        for l in labels { ext += [Int(l), 0] }
        let s = ext.count
        let lp = logSoftmax(logits, frames: frames, vocab: vocab)
        func y(_ t: Int, _ j: Int) -> Double { lp[t * vocab + ext[j]] }
        func skip(_ j: Int) -> Bool { j >= 2 && ext[j] != 0 && ext[j] != ext[j - 2] }
        var alpha = [[Double]](repeating: [Double](repeating: -.infinity, count: s), count: frames)
        var beta = alpha
        alpha[0][0] = y(0, 0)
        if s > 1 { alpha[0][1] = y(0, 1) }
        for t in 1..<frames {
            for j in 0..<s {
                var terms = [alpha[t - 1][j]]
                if j >= 1 { terms.append(alpha[t - 1][j - 1]) }
                if skip(j) { terms.append(alpha[t - 1][j - 2]) }
                alpha[t][j] = y(t, j) + logSumExp(terms)
            }
        }
        let last = frames - 1
        beta[last][s - 1] = y(last, s - 1)
        if s > 1 { beta[last][s - 2] = y(last, s - 2) }
        for t in stride(from: last - 1, through: 0, by: -1) {
            for j in 0..<s {
                var terms = [beta[t + 1][j]]
                if j + 1 < s { terms.append(beta[t + 1][j + 1]) }
                if j + 2 < s && skip(j + 2) { terms.append(beta[t + 1][j + 2]) }
                beta[t][j] = y(t, j) + logSumExp(terms)
            }
        }
        let logP = logSumExp(s > 1 ? [alpha[last][s - 1], alpha[last][s - 2]] : [alpha[last][s - 1]])
        if logP == -.infinity { return (.infinity, grad) }
        for t in 0..<frames {
            for k in 0..<vocab { grad[t * vocab + k] = exp(lp[t * vocab + k]) }
            for j in 0..<s where alpha[t][j] != -.infinity && beta[t][j] != -.infinity {
                grad[t * vocab + ext[j]] -= exp(alpha[t][j] + beta[t][j] - y(t, j) - logP)
            }
        }
        return (-logP, grad)
    }
}
