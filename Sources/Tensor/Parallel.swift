import CCompute

/// Runs body(lo, hi) over contiguous parts of 0..<count on the rank's thread pool (`Compute.threads`
/// parts at most; part i is [i·count/parts, (i+1)·count/parts)). Serial when the pool has one thread,
/// when count < 2, or when called from inside a pool task. Kernels use it so that every output element
/// is written by exactly one part with the same arithmetic as the serial loop: results do not depend on
/// the thread count. No allocation: the closure is passed by address.
@inline(__always)
public func parallelFor(_ count: Int, _ body: (Int, Int) -> Void) {
    if count <= 0 { return }
    if count == 1 || w2v_pool_threads() <= 1 || w2v_pool_in_task() != 0 { body(0, count); return }
    withoutActuallyEscaping(body) { escaping in
        var fn = escaping
        withUnsafeMutablePointer(to: &fn) { p in
            w2v_pool_run(count, UnsafeMutableRawPointer(p)) { ctx, lo, hi in
                ctx!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(lo, hi)
            }
        }
    }
}

/// parallelFor over count items with at least `grain` items per part (small loops stay on one thread), at
/// most one part per thread: grain 1 suits kernels split by columns or channels, whose every part walks all
/// the rows (more parts would repeat that walk).
@inline(__always)
public func parallelFor(_ count: Int, grain: Int, _ body: (Int, Int) -> Void) {
    let parts = min(Int(w2v_pool_threads()), count / max(grain, 1))
    if parts <= 1 { if count > 0 { body(0, count) }; return }
    // Split into `parts` equal chunks of items.
    parallelFor(parts) { lo, hi in
        body(count * lo / parts, count * hi / parts)
    }
}

/// Values per part of threaded elementwise loops: a multiple of 16 (the widest SIMD), large enough that a
/// part costs far more than waking a worker.
public let elementChunk = 16_384

/// body(start, count) over [0, n) in chunks of `elementChunk` spread over the pool; chunk boundaries do not
/// depend on the thread count, so elementwise results are the same on any number of threads.
@inline(__always)
public func parallelChunks(_ n: Int, _ body: (Int, Int) -> Void) {
    if n <= elementChunk { if n > 0 { body(0, n) }; return }
    let chunks = (n + elementChunk - 1) / elementChunk
    parallelFor(chunks) { lo, hi in
        let s = lo * elementChunk, e = min(hi * elementChunk, n)
        body(s, e - s)
    }
}
