// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011). A stream is keyed by (seed, step, micro-batch, purpose), so a draw depends only on
// what it is for, never on which rank makes it or in which order ranks run.
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (block index, step, micro-batch index, purpose)
// Each block yields four 32-bit words; a stream holds 2^32 blocks.

/// What a random stream is used for; the raw value is part of the counter.
public enum RandomPurpose: UInt32, Sendable {
    case initialization = 1
    case shuffle = 2
    case crop = 3
    case mask = 4
    case maskNoise = 5
    case gumbel = 6
    case distractors = 7
    case dropout = 8
    case layerDrop = 9
    case revive = 10
    case channelMask = 11
    case test = 99
}

@inline(__always)
func mulhilo(_ a: UInt32, _ b: UInt32) -> (hi: UInt32, lo: UInt32) {
    let p = UInt64(a) &* UInt64(b)
    return (UInt32(truncatingIfNeeded: p >> 32), UInt32(truncatingIfNeeded: p))
}

/// One Philox4x32-10 block.
@inline(__always)
public func philox4x32(
    counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)
)
    -> (UInt32, UInt32, UInt32, UInt32)
{
    var (c0, c1, c2, c3) = counter
    var (k0, k1) = key
    for _ in 0..<10 {
        let (hi0, lo0) = mulhilo(0xD251_1F53, c0)
        let (hi1, lo1) = mulhilo(0xCD9E_8D57, c2)
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
        k0 = k0 &+ 0x9E37_79B9
        k1 = k1 &+ 0xBB67_AE85
    }
    return (c0, c1, c2, c3)
}

/// A deterministic stream of random numbers for one (seed, step, micro-batch, purpose).
/// The 53-bit uniform in (0, 1) made of two draws (a first).
@inline(__always)
func uniformDouble(_ a: UInt32, _ b: UInt32) -> Double {
    (Double(UInt64(a >> 5) << 26 | UInt64(b >> 6)) + 0.5) * (1.0 / 9_007_199_254_740_992.0)
}

public struct RandomStream: Sendable {
    public let key: (UInt32, UInt32)
    public let step: UInt32, microBatch: UInt32, purpose: UInt32
    private var block: UInt32 = 0
    private var buffer: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var used = 4
    private var spareNormal: Float? = nil

    public init(seed: UInt64, step: Int = 0, microBatch: Int = 0, purpose: RandomPurpose) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
        self.step = UInt32(truncatingIfNeeded: step)
        self.microBatch = UInt32(truncatingIfNeeded: microBatch)
        self.purpose = purpose.rawValue
    }

    /// Next 32 random bits.
    @inline(__always)
    public mutating func nextUInt32() -> UInt32 {
        if used == 4 {
            buffer = philox4x32(counter: (block, step, microBatch, purpose), key: key)
            block &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return buffer.0
        case 1: return buffer.1
        case 2: return buffer.2
        default: return buffer.3
        }
    }

    /// Uniform in the open interval (0, 1) (24 random bits, never exactly 0 or 1).
    @inline(__always)
    public mutating func nextUniform() -> Float {
        (Float(nextUInt32() >> 8) + 0.5) * (1.0 / 16_777_216.0)
    }

    /// Uniform in (0, 1) with 53 bits, for Double tests and careful draws.
    public mutating func nextUniformDouble() -> Double {
        let a = nextUInt32()
        return uniformDouble(a, nextUInt32())
    }

    /// Uniform integer in 0..<n (Lemire's multiply-shift with rejection, unbiased).
    @inline(__always)
    public mutating func nextInt(_ n: Int) -> Int {
        precondition(n > 0 && n <= Int(UInt32.max))
        let bound = UInt32(n)
        var m = UInt64(nextUInt32()) &* UInt64(bound)
        var low = UInt32(truncatingIfNeeded: m)
        if low < bound {
            let threshold = (0 &- bound) % bound
            while low < threshold {
                m = UInt64(nextUInt32()) &* UInt64(bound)
                low = UInt32(truncatingIfNeeded: m)
            }
        }
        return Int(m >> 32)
    }

    /// Standard normal (Box-Muller, both values used).
    public mutating func nextNormal() -> Float {
        if let s = spareNormal {
            spareNormal = nil
            return s
        }
        let u1 = nextUniformDouble(), u2 = nextUniformDouble()
        let r = (-2 * log(u1)).squareRoot()
        let a = 2 * Double.pi * u2
        spareNormal = Float(r * sin(a))
        return Float(r * cos(a))
    }

    /// Standard Gumbel(0, 1): −ln(−ln u).
    @inline(__always)
    public mutating func nextGumbel() -> Float {
        let u = nextUniformDouble()
        return Float(-log(-log(u)))
    }

    public mutating func fillUniform(_ p: FPtr, _ n: Int, low: Float = 0, high: Float = 1) {
        for i in 0..<n { p[i] = low + (high - low) * nextUniform() }
    }
    /// Normal values; from a block boundary (no buffered bits, no spare value) the pairs are spread over the
    /// rank's threads: pair j is Box-Muller on block `block + j`, exactly what the serial draws give.
    public mutating func fillNormal(_ p: FPtr, _ n: Int, mean: Float = 0, std: Float = 1) {
        var i = 0
        if used == 4 && spareNormal == nil && n >= 2 {
            let pairs = n / 2, b0 = block, k = key, c = (step, microBatch, purpose)
            parallelFor(pairs, grain: 512) { lo, hi in
                for j in lo..<hi {
                    let w = philox4x32(counter: (b0 &+ UInt32(truncatingIfNeeded: j), c.0, c.1, c.2), key: k)
                    let u1 = uniformDouble(w.0, w.1), u2 = uniformDouble(w.2, w.3)
                    let r = (-2 * log(u1)).squareRoot()
                    let a = 2 * Double.pi * u2
                    p[2 * j] = mean + std * Float(r * cos(a))
                    p[2 * j + 1] = mean + std * Float(r * sin(a))
                }
            }
            block = b0 &+ UInt32(truncatingIfNeeded: pairs)
            i = 2 * pairs
        }
        while i < n {
            p[i] = mean + std * nextNormal()
            i += 1
        }
    }
    /// Gumbel values; from a block boundary the blocks (two values each) are spread over the threads.
    public mutating func fillGumbel(_ p: FPtr, _ n: Int) {
        var i = 0
        if used == 4 && n >= 2 {
            let pairs = n / 2, b0 = block, k = key, c = (step, microBatch, purpose)
            parallelFor(pairs, grain: 512) { lo, hi in
                for j in lo..<hi {
                    let w = philox4x32(counter: (b0 &+ UInt32(truncatingIfNeeded: j), c.0, c.1, c.2), key: k)
                    p[2 * j] = Float(-log(-log(uniformDouble(w.0, w.1))))
                    p[2 * j + 1] = Float(-log(-log(uniformDouble(w.2, w.3))))
                }
            }
            block = b0 &+ UInt32(truncatingIfNeeded: pairs)
            i = 2 * pairs
        }
        while i < n {
            p[i] = nextGumbel()
            i += 1
        }
    }
    /// In-place Fisher-Yates shuffle.
    public mutating func shuffle<T>(_ a: inout [T]) {
        if a.count < 2 { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = nextInt(i + 1)
            if i != j { a.swapAt(i, j) }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
