import Foundation

/// Every collective the trainer issues goes through here: it gets a sequence number and a name, and a
/// watchdog thread aborts the whole job (exit status 78) when one has not completed after `timeout`
/// seconds, printing which collective on which rank — instead of hanging forever when a rank skipped
/// a collective or died (docs/clusters.md: a skipped collective hangs everyone silently).
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
    public func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    public var rank: Int { comm.rank }
    public var size: Int { comm.size }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: min(0.2, timeout / 4))
            lock.lock()
            if stopped {
                lock.unlock()
                return
            }
            let now = Date().timeIntervalSince1970
            let late = inFlight.first { now - $0.value.start > timeout }
            lock.unlock()
            if let (seq, info) = late {
                let msg =
                    "w2vbert: rank \(comm.rank) (\(comm.hostName)): collective #\(seq) '\(info.name)' has not "
                        + "completed after \(Int(now - info.start)) s (dist.timeout = \(timeout) s); another rank "
                        + "skipped it or died. Aborting the job.\n"
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
        if skip { inFlight[seq] = nil }  // this rank is not in the collective: only the others wait in it
        lock.unlock()
        defer {
            lock.lock()
            inFlight[seq] = nil
            lock.unlock()
        }
        if skip {
            // Simulate a rank that never joins: the others hang in this collective until their watchdog fires.
            FileHandle.standardError.write(
                Data("w2vbert: rank \(comm.rank): test hook skips collective #\(seq) '\(name)'\n".utf8))
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
        return try body()
    }

    public var sequence: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return nextSeq
    }

    public func allReduce(
        _ name: String, _ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp
    ) throws {
        try run(name) { try comm.allReduce(buffer, count: count, type: type, op: op) }
    }
    public func allReduce(_ name: String, _ values: inout [Double], op: ReduceOp = .sum) throws {
        try run(name) { try comm.allReduce(&values, op: op) }
    }
    public func allReduce(_ name: String, _ values: inout [Int64], op: ReduceOp = .sum) throws {
        try run(name) { try comm.allReduce(&values, op: op) }
    }
    public func broadcast(
        _ name: String, _ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int = 0
    ) throws {
        try run(name) { try comm.broadcast(buffer, count: count, type: type, root: root) }
    }
    public func broadcast(_ name: String, bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        try run(name) { try comm.broadcast(bytes: bytes, root: root) }
    }
    public func allGather(
        _ name: String, send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType
    ) throws {
        try run(name) { try comm.allGather(send: send, recv: recv, count: count, type: type) }
    }
    public func barrier(_ name: String) throws { try run(name) { try comm.barrier() } }
}
