import Foundation

/// Every collective the trainer issues goes through here: it gets a sequence number and a name, and a
/// watchdog thread aborts the whole job (exit status 78) when one has not completed after `timeout`
/// seconds, printing which collective on which rank — instead of hanging forever when a rank skipped
/// a collective or died (CLUSTER.md: a skipped collective hangs everyone silently).
public final class Collectives: @unchecked Sendable {
    public let comm: Communicator
    public let timeout: Double
    public static let watchdogExitCode: Int32 = 78

    private let lock = NSLock()
    private var nextSeq: Int64 = 0
    private var inFlight: [Int64: (name: String, start: Double)] = [:]
    private var thread: Thread?
    private var stopped = false
    /// Test hook: when set, this rank silently skips the collective with this sequence number.
    public var skipSequenceForTest: Int64? = nil

    public init(comm: Communicator, timeout: Double) {
        self.comm = comm
        self.timeout = timeout
        if comm.size > 1 && timeout > 0 {
            let t = Thread { [weak self] in self?.watch() }
            t.name = "w2v-watchdog"
            thread = t
            t.start()
        }
    }
    deinit { stop() }
    public func stop() { lock.lock(); stopped = true; lock.unlock() }

    public var rank: Int { comm.rank }
    public var size: Int { comm.size }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: min(0.2, timeout / 4))
            lock.lock()
            if stopped { lock.unlock(); return }
            let now = Date().timeIntervalSince1970
            let late = inFlight.first { now - $0.value.start > timeout }
            lock.unlock()
            if let (seq, info) = late {
                let msg = "w2vbert: rank \(comm.rank) (\(comm.hostName)): collective #\(seq) '\(info.name)' has not completed after \(Int(now - info.start)) s (dist.timeout = \(timeout) s); another rank skipped it or died. Aborting the job.\n"
                FileHandle.standardError.write(Data(msg.utf8))
                comm.abort(code: Collectives.watchdogExitCode)
            }
        }
    }

    /// Runs one named collective under the watchdog.
    @discardableResult
    public func run<T>(_ name: String, _ body: () throws -> T) throws -> T {
        lock.lock()
        let seq = nextSeq
        nextSeq += 1
        inFlight[seq] = (name, Date().timeIntervalSince1970)
        let skip = skipSequenceForTest == seq
        if skip { inFlight[seq] = nil }   // this rank is not in the collective: only the others wait in it
        lock.unlock()
        defer { lock.lock(); inFlight[seq] = nil; lock.unlock() }
        if skip {
            // Simulate a rank that never joins: the others hang in this collective until their watchdog fires.
            FileHandle.standardError.write(Data("w2vbert: rank \(comm.rank): test hook skips collective #\(seq) '\(name)'\n".utf8))
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
        return try body()
    }

    public var sequence: Int64 { lock.lock(); defer { lock.unlock() }; return nextSeq }

    public func allReduce(_ name: String, _ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws {
        try run(name) { try comm.allReduce(buffer, count: count, type: type, op: op) }
    }
    public func allReduce(_ name: String, _ values: inout [Double], op: ReduceOp = .sum) throws {
        try run(name) { try comm.allReduce(&values, op: op) }
    }
    public func allReduce(_ name: String, _ values: inout [Int64], op: ReduceOp = .sum) throws {
        try run(name) { try comm.allReduce(&values, op: op) }
    }
    public func broadcast(_ name: String, _ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int = 0) throws {
        try run(name) { try comm.broadcast(buffer, count: count, type: type, root: root) }
    }
    public func broadcast(_ name: String, bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        try run(name) { try comm.broadcast(bytes: bytes, root: root) }
    }
    public func allGather(_ name: String, send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType) throws {
        try run(name) { try comm.allGather(send: send, recv: recv, count: count, type: type) }
    }
    public func barrier(_ name: String) throws { try run(name) { try comm.barrier() } }
}

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
    /// Failed all-reduce calls since the reducer was made (each failure is issued once).
    public var failedCollectives: Int { cond.lock(); defer { cond.unlock() }; return attempts }
    private var attempts = 0
    /// Seconds the communication thread spent inside all-reduce during the last step.
    public private(set) var reduceSeconds = 0.0

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
        cond.lock(); shutdown = true; cond.broadcast(); cond.unlock()
    }

    /// Splits [0, total) into buckets of about `bucketFloats`, aligned to tensor boundaries given in
    /// `tensorRanges` (in forward order); returns them in reverse (the order backward finishes them).
    public static func plan(tensorRanges: [Range<Int>], bucketFloats: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var end: Int? = nil, start = 0
        for r in tensorRanges.reversed() {
            if end == nil { end = r.upperBound }
            start = r.lowerBound
            if end! - start >= bucketFloats { out.append(start..<end!); end = nil }
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
            cond.lock(); active = false; cond.unlock()
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
            // After a failed all-reduce nothing more is issued until the next begin() (issue 11: the loop
            // used to re-issue the failed collective until wait() noticed).
            while !shutdown && !(active && failure == nil && done < buckets.count && ready[done]) { cond.wait() }
            if shutdown { cond.unlock(); return }
            let i = done
            cond.unlock()
            let r = buckets[i]
            let t0 = Date().timeIntervalSince1970
            do {
                try collectives.allReduce("gradient bucket \(i)", buffer + r.lowerBound, count: r.count, type: .float, op: .sum)
            } catch {
                cond.lock(); failure = error; attempts += 1; cond.broadcast(); cond.unlock()
                continue
            }
            let dt = Date().timeIntervalSince1970 - t0
            cond.lock()
            reduceSeconds += dt
            done += 1
            cond.broadcast()
            cond.unlock()
        }
    }
}
