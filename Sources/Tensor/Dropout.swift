/// Dropout with a stored mask: mask[i] = 0 with probability p, else 1/(1 − p); y = x ⊙ mask.
/// The mask comes from a counter-based stream, so it is the same on any rank for the same key.
public func dropoutMask(_ mask: FPtr, n: Int, p: Float, stream: inout RandomStream) {
    if p <= 0 {
        mask.update(repeating: 1, count: n)
        return
    }
    let keep = 1 / (1 - p)
    for i in 0..<n { mask[i] = stream.nextUniform() < p ? 0 : keep }
}
public func dropoutForward(y: FPtr, x: CFPtr, mask: CFPtr, n: Int) {
    for i in 0..<n { y[i] = x[i] * mask[i] }
}
/// Accumulates dx += dy ⊙ mask.
public func dropoutBackward(dx: FPtr, dy: CFPtr, mask: CFPtr, n: Int) {
    for i in 0..<n { dx[i] += dy[i] * mask[i] }
}
