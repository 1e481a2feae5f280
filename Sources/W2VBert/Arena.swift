import Tensor

/// A bump allocator over one FloatBuffer. Activations are carved twice with the same code: first by a
/// measuring arena (no memory; it only counts), then by a real one of exactly that size. Every carve is
/// aligned to 16 floats. `rewind(to:)` hands the same floats out again (parts that are never live at the same
/// time); the arena's size is the high-water mark `peak`. The arena also carries the compute settings the model
/// is built for: the parts size their per-thread workspaces from `compute.threads` and run their kernels with
/// `compute`.
public final class Arena {
    public let buffer: FloatBuffer?
    public let compute: Compute
    private let base: FPtr
    public private(set) var used = 0
    /// The most floats in use at any time: the size a real arena needs.
    public private(set) var peak = 0

    /// Measuring arena: hands out never-dereferenced addresses and counts floats.
    public init(compute: Compute) {
        self.compute = compute
        buffer = nil
        base = FPtr(bitPattern: 1 << 20)!
    }
    public init(count: Int, compute: Compute) {
        self.compute = compute
        buffer = FloatBuffer(count: count)
        base = buffer!.ptr
    }

    public func take(_ n: Int) -> FPtr {
        let p = base + used
        used += (max(n, 1) + 15) / 16 * 16
        peak = max(peak, used)
        if let buffer { precondition(used <= buffer.count, "arena overflow") }
        return p
    }
    /// Carves from `mark` (an earlier `used`) again: what was carved after it is handed out anew.
    public func rewind(to mark: Int) {
        precondition(mark <= used, "arena rewind past its end")
        used = mark
    }
    /// Runs `body` with the arena rewound to `mark` (an earlier `used`, with everything carved since then free
    /// whenever `body`'s parts are in use), then returns to where it was: `body`'s parts reuse those floats and
    /// the arena grows only by what does not fit.
    public func carve<T>(over mark: Int, _ body: () -> T) -> T {
        let end = used
        rewind(to: mark)
        let parts = body()
        if used < end { used = end }
        return parts
    }
    /// Carves `build`'s parts twice, first from a measuring arena, then from a real one of exactly the size
    /// measured (the models' activations).
    static func measuredAndCarved<Parts>(compute: Compute, _ build: (Arena) -> Parts) -> (Arena, Parts) {
        let measure = Arena(compute: compute)
        _ = build(measure)
        let arena = Arena(count: measure.peak, compute: compute)
        return (arena, build(arena))
    }
    public func takeInt32(_ n: Int) -> UnsafeMutablePointer<Int32> {
        UnsafeMutableRawPointer(take(n)).assumingMemoryBound(to: Int32.self)
    }
}
