import Foundation

/// Gradient buckets all-reduced on a background thread while backward goes on (Horovod/DDP style).
/// Buckets are ranges of the flat gradient buffer, listed in the order backward completes them (reverse
/// layer order); the thread reduces them strictly in that order on every rank, each as soon as backward
/// has marked it ready. `wait()` blocks until all are reduced and reports the time spent waiting.
public final class GradientBucketReducer: @unchecked Sendable {
    public let buckets: [Range<Int>]
    private let collectives: Collectives
    private let buffer: UnsafeMutablePointer<Float>
    private let cond = NSCondition()
    private var ready: [Bool]
    private var done = 0
    private var active = false
    private var failure: Error?
    private var shutdown = false
    private var thread: Thread?
    /// Seconds the communication thread spent inside all-reduce during the last step.
    public private(set) var reduceSeconds = 0.0
    /// Floats the communication thread all-reduced during the last step (the gradient buckets).
    public private(set) var reducedFloats = 0

    public init(collectives: Collectives, gradients: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) {
        self.collectives = collectives
        self.buffer = gradients
        self.buckets = buckets
        ready = [Bool](repeating: false, count: buckets.count)
        if collectives.size > 1 {
            let t = Thread { [weak self] in self?.loop() }
            t.name = "w2v-allreduce"
            thread = t
            t.start()
        }
    }
    deinit {
        cond.lock()
        shutdown = true
        cond.broadcast()
        cond.unlock()
    }

    /// Splits [0, total) into buckets of about `bucketFloats`, aligned to tensor boundaries given in
    /// `tensorRanges` (in forward order); returns them in reverse (the order backward finishes them).
    public static func plan(tensorRanges: [Range<Int>], bucketFloats: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var end: Int? = nil, start = 0
        for r in tensorRanges.reversed() {
            if end == nil { end = r.upperBound }
            start = r.lowerBound
            if end! - start >= bucketFloats {
                out.append(start..<end!)
                end = nil
            }
        }
        if let e = end { out.append(start..<e) }
        return out
    }

    /// Starts a step: no bucket ready yet.
    public func begin() {
        cond.lock()
        for i in ready.indices { ready[i] = false }
        done = 0
        reduceSeconds = 0
        reducedFloats = 0
        failure = nil
        active = true
        cond.unlock()
    }

    /// Backward has finished bucket i (its gradients will not change any more this step).
    public func markReady(_ i: Int) {
        cond.lock()
        ready[i] = true
        cond.broadcast()
        cond.unlock()
    }

    /// Marks every bucket not yet marked (after backward) and waits for all reductions. Returns the
    /// seconds the caller waited.
    @discardableResult
    public func wait() throws -> Double {
        let t0 = Date().timeIntervalSince1970
        if thread == nil {
            // One rank: nothing to reduce.
            cond.lock()
            active = false
            cond.unlock()
            return 0
        }
        cond.lock()
        for i in ready.indices { ready[i] = true }
        cond.broadcast()
        while done < buckets.count && failure == nil { cond.wait() }
        active = false
        let f = failure
        cond.unlock()
        if let f { throw f }
        return Date().timeIntervalSince1970 - t0
    }

    private func loop() {
        while true {
            cond.lock()
            while !shutdown && !(active && done < buckets.count && ready[done]) { cond.wait() }
            if shutdown {
                cond.unlock()
                return
            }
            let i = done
            cond.unlock()
            let r = buckets[i]
            let t0 = Date().timeIntervalSince1970
            do {
                try collectives.allReduce(
                    "gradient bucket \(i)", buffer + r.lowerBound, count: r.count, type: .float, op: .sum)
            } catch {
                // Stop issuing collectives for this step: `wait()` throws the failure to the trainer.
                cond.lock()
                failure = error
                active = false
                cond.broadcast()
                cond.unlock()
                continue
            }
            let dt = Date().timeIntervalSince1970 - t0
            cond.lock()
            reduceSeconds += dt
            reducedFloats += r.count
            done += 1
            cond.broadcast()
            cond.unlock()
        }
    }
}
