import CCompute

/// Runs body(lo, hi) over contiguous parts of 0..<count on the rank's thread pool (as many parts as it
/// has threads at most; part i is [i·count/parts, (i+1)·count/parts)). Serial when the pool has one thread,
/// when count < 2, or when called from inside a pool task. Kernels use it so that every output element
/// is written by exactly one part with the same arithmetic as the serial loop: results do not depend on
/// the thread count. No allocation: the closure is passed by address.
@inline(__always)
public func parallelFor(_ count: Int, _ body: (Int, Int) -> Void) {
    if count <= 0 { return }
    if count == 1 || w2v_pool_threads() <= 1 || w2v_pool_in_task() != 0 {
        body(0, count)
        return
    }
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
    if parts <= 1 {
        if count > 0 { body(0, count) }
        return
    }
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
    if n <= elementChunk {
        if n > 0 { body(0, n) }
        return
    }
    let chunks = (n + elementChunk - 1) / elementChunk
    parallelFor(chunks) { lo, hi in
        let s = lo * elementChunk, e = min(hi * elementChunk, n)
        body(s, e - s)
    }
}

/// Rows (frames, for the depthwise convolution) per block of a `blockSums` reduction. Fixed, not derived
/// from the thread count, so the sums are the same on any number of threads.
public let reductionRows = 64

/// A column reduction split by blocks of rows: body(partial, block) adds the block's contributions into its
/// own zeroed partial[0..<width]; the blocks are spread over the threads (at least `grain` per part), then
/// the partials are added in block order. Returns the width sums (the calling thread's buffer 4, valid until
/// its next call). Every cache line is written by one thread: kernels split by columns instead had both
/// threads writing into every row (their halves of it), and the cores then pulled the lines at the boundary
/// from each other on every row (a depthwise backward ran 2.3× slower on 2 threads than on one).
@inline(__always)
public func blockSums(blocks: Int, width: Int, grain: Int = 1, _ body: (FPtr, Int) -> Void) -> CFPtr {
    let stride = (width + 15) / 16 * 16
    guard let raw = w2v_thread_buffer(4, (blocks + 1) * stride * 4) else {
        fatalError("out of memory for \(blocks) partial sums of \(width) floats")
    }
    let part = raw.assumingMemoryBound(to: Float.self), total = part + blocks * stride
    if blocks == 0 {
        total.update(repeating: 0, count: width)
        return CFPtr(total)
    }
    parallelFor(blocks, grain: grain) { lo, hi in
        for blk in lo..<hi {
            let p = part + blk * stride
            p.update(repeating: 0, count: width)
            body(p, blk)
        }
    }
    // total[j] = ((partial₀[j] + partial₁[j]) + …) over 64-float column chunks (distinct lines per thread).
    let chunks = (width + 63) / 64
    parallelFor(chunks, grain: blocks * width >= 4 * elementChunk ? 1 : Int.max) { lo, hi in
        lanes8(
            lo * 64, min(hi * 64, width),
            { j in
                var s = load8(part + j)
                for blk in 1..<blocks { s += load8(part + blk * stride + j) }
                store8(s, total + j)
            },
            { j in
                var s = part[j]
                for blk in 1..<blocks { s += part[blk * stride + j] }
                total[j] = s
            })
    }
    return CFPtr(total)
}

/// `blockSums` over rows 0..<rows in blocks of `reductionRows`: body(partial, the block's rows).
@inline(__always)
public func rowBlockSums(rows: Int, width: Int, _ body: (FPtr, Range<Int>) -> Void) -> CFPtr {
    blockSums(
        blocks: (rows + reductionRows - 1) / reductionRows, width: width,
        grain: max(1, elementChunk / max(reductionRows * width, 1))
    ) { part, blk in
        body(part, blk * reductionRows..<min(rows, (blk + 1) * reductionRows))
    }
}

/// out[j] += sums[j] for j in 0..<n (after `blockSums`).
@inline(__always)
public func addSums(_ out: FPtr, _ sums: CFPtr, _ n: Int) {
    lanes8(0, n, { store8(load8(out + $0) + load8(sums + $0), out + $0) }, { out[$0] += sums[$0] })
}
