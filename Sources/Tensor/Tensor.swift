// Tensor: the numerical core of w2vbert-swift.
//
// Contract (llm.c style): every op is a pair of free functions `<op>Forward` / `<op>Backward` over flat,
// row-major Float buffers, arguments ordered outputs, inputs, weights, dimensions. Every backward
// ACCUMULATES (+=) into its gradient buffers; the caller zeroes them once per step. Each op file also
// holds a naive Double `reference` used only by the tests (finite differences and forward checks).
//
// Dimension glossary
//   B  utterances in a micro-batch        T0 fbank frames        T  frames after the feature encoder
//   N  rows of a matrix (usually B·T)     d  model dim           h  heads, dh = d/h
//   f  FFN dim (4d)                       C  channels            G  codebooks (groups), V entries each
//   K  distractors                        P  positional-conv kernel, Gp its groups
//   k  depthwise kernel                   D  codebook vector size

public typealias FPtr = UnsafeMutablePointer<Float>
public typealias CFPtr = UnsafePointer<Float>

/// An owned, 64-byte aligned Float buffer. The model carves parameters, gradients, optimizer moments and
/// activations out of a few of these; nothing in the training step allocates after the first step.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let ptr: FPtr

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
        ptr = raw.bindMemory(to: Float.self, capacity: max(1, count))
        if zeroed { ptr.initialize(repeating: 0, count: max(1, count)) }
        FloatBuffer.allocatedBytes.add(count * 4)
    }
    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { ptr.update(from: $0.baseAddress!, count: values.count) }
    }
    deinit { ptr.deallocate() }

    public func zero() { ptr.update(repeating: 0, count: count) }
    public var array: [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }
    public subscript(i: Int) -> Float {
        get { ptr[i] }
        set { ptr[i] = newValue }
    }

    /// Total bytes ever allocated through FloatBuffer (the benchmark checks that a step adds none).
    public static let allocatedBytes = Counter()
}

/// A tiny thread-safe counter (used for allocation accounting).
public final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLockLite()
    public init() {}
    public func add(_ n: Int) { lock.withLock { value += n } }
    public var current: Int { lock.withLock { value } }
}

/// pthread mutex without Foundation.
public final class NSLockLite: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>
    public init() {
        m = .allocate(capacity: 1)
        pthread_mutex_init(m, nil)
    }
    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }
    @inlinable public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lockRaw()
        defer { unlockRaw() }
        return try body()
    }
    public func lockRaw() { pthread_mutex_lock(m) }
    public func unlockRaw() { pthread_mutex_unlock(m) }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
