// Vectorised exp for the hot elementwise loops (softmax, Swish, sigmoid/GLU). Swift does not reassociate
// floating-point reductions and libm's expf is a scalar call, so a plain loop runs at ~10 ns per element;
// these helpers work on SIMD8<Float> explicitly (≈1 ns per element on baseline x86-64).
//
// exp: range reduction x = n·ln2 + r, |r| ≤ ln2/2, rounding by the 1.5·2²³ trick, a degree-6 polynomial
// (Cephes expf coefficients), 2ⁿ built in the exponent bits. Relative error ≤ 3e-7 on [−87, 88]
// (tested against Double exp). x < −87.3, including −∞ from masked scores, gives exactly 0.
// `@_transparent`: with `@inline(__always)` the optimizer still left eleven call sites (Swish, GLU, softmax)
// calling it once per eight values, the vector passed as two halves.

public typealias F8 = SIMD8<Float>

@_transparent
public func fastExp(_ x: F8) -> F8 {
    let lo = F8(repeating: -87.3), hi = F8(repeating: 88.3)
    var xc = x
    xc.replace(with: lo, where: x .< lo)
    xc.replace(with: hi, where: x .> hi)
    let magic = F8(repeating: 12_582_912.0)
    let t = xc * 1.442695041 + magic
    let n = t - magic
    var r = xc - n * 0.693359375
    r = r - n * -2.12194440e-4
    let r2 = r * r
    var p = F8(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let e = p * r2 + r + 1
    // t's low mantissa bits hold n (as an integer offset from magic's bit pattern).
    let ni = unsafeBitCast(t, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
    let scale = unsafeBitCast((ni &+ 127) &<< 23, to: F8.self)
    return (e * scale).replacing(with: 0, where: x .< lo)
}

@_transparent
public func fastExp(_ x: Float) -> Float { fastExp(F8(repeating: x))[0] }

@inline(__always)
public func load8(_ p: UnsafePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }
@inline(__always)
public func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// body8(i) for i = lo, lo + 8, … while eight fit before hi, then body1(i) for the rest: explicit eight-lane
/// loops for kernels whose plain loops the compiler does not vectorise (pointer aliasing inside closures).
/// With separate multiplies and adds the lanes compute exactly what the scalar loop would.
@inline(__always)
public func lanes8(_ lo: Int, _ hi: Int, _ body8: (Int) -> Void, _ body1: (Int) -> Void) {
    var i = lo
    while i + 8 <= hi {
        body8(i)
        i += 8
    }
    while i < hi {
        body1(i)
        i += 1
    }
}

/// Σ_j f(j) for j in 0..<c: eight lanes (f8 at j = 0, 8, …), the lanes added in order, then the scalar tail.
@inline(__always)
func laneSum(_ c: Int, _ f8: (Int) -> F8, tail: (Int) -> Float) -> Float {
    var acc = F8(repeating: 0)
    var j = 0
    while j + 8 <= c {
        acc += f8(j)
        j += 8
    }
    var s: Float = 0
    for l in 0..<8 { s += acc[l] }
    while j < c {
        s += tail(j)
        j += 1
    }
    return s
}

/// max of n floats.
@inline(__always)
public func vectorMax(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var m = -Float.infinity
    if n >= 8 {
        var acc = load8(x)
        i = 8
        while i + 8 <= n {
            let v = load8(x + i)
            acc.replace(with: v, where: v .> acc)
            i += 8
        }
        for j in 0..<8 { m = Swift.max(m, acc[j]) }
    }
    while i < n {
        m = Swift.max(m, x[i])
        i += 1
    }
    return m
}

/// y[i] = exp(x[i] − shift); returns Σ y (8 partial sums).
@inline(__always)
public func expShiftSum(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
    var i = 0
    var acc = F8(repeating: 0)
    let s = F8(repeating: shift)
    while i + 8 <= n {
        let e = fastExp(load8(x + i) - s)
        store8(e, y + i)
        acc += e
        i += 8
    }
    var total = acc.sum()
    while i < n {
        let e = fastExp(x[i] - shift)
        y[i] = e
        total += e
        i += 1
    }
    return total
}

/// Σ x[i]·y[i] with 8 partial sums.
@inline(__always)
public func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var acc = F8(repeating: 0)
    while i + 8 <= n {
        acc += load8(x + i) * load8(y + i)
        i += 8
    }
    var total = acc.sum()
    while i < n {
        total += x[i] * y[i]
        i += 1
    }
    return total
}

/// y[i] = σ(x[i]) = 1/(1 + exp(−x[i])).
@inline(__always)
public func sigmoidVector(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    let one = F8(repeating: 1)
    while i + 8 <= n {
        store8(one / (one + fastExp(-load8(x + i))), y + i)
        i += 8
    }
    while i < n {
        y[i] = 1 / (1 + fastExp(-x[i]))
        i += 1
    }
}

/// How a backward kernel writes its input gradient: `accumulate` adds into it (several branches feed one
/// gradient; the contract of every `xxxBackward`), `overwrite` stores the first or only contribution, which
/// saves the pass that zeroes the buffer and the reads of those zeros. Both give the same values (0 + v = v).
public enum GradientWrite: Sendable { case accumulate, overwrite }

/// p[0..<8] = v (overwrite) or p[0..<8] += v.
@inline(__always)
func put8(_ v: F8, _ p: FPtr, _ w: GradientWrite) { store8(w == .overwrite ? v : load8(p) + v, p) }
/// p[0] = v (overwrite) or p[0] += v.
@inline(__always)
func put1(_ v: Float, _ p: FPtr, _ w: GradientWrite) { p.pointee = w == .overwrite ? v : p.pointee + v }
