import Distributed
import Foundation

/// Ranks as threads of one process: every collective is an exchange of byte blocks through a shared
/// board (each rank posts its block, waits for all, reads what it needs, waits again). For testing the
/// rank protocols of library functions without mpirun; the mpirun tests cover the real transport.
final class ThreadGroup: @unchecked Sendable {
    let size: Int
    private let cond = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var board: [[UInt8]]

    init(size: Int) {
        self.size = size
        board = [[UInt8]](repeating: [], count: size)
    }

    /// One communicator per rank.
    var communicators: [ThreadCommunicator] { (0..<size).map { ThreadCommunicator(rank: $0, group: self) } }

    /// Blocks until every rank has called it.
    func barrier() {
        cond.lock()
        defer { cond.unlock() }
        let g = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            cond.broadcast()
        } else {
            while g == generation { cond.wait() }
        }
    }

    /// Every rank's block, rank-major, on every rank.
    func exchange(rank: Int, _ block: [UInt8]) -> [[UInt8]] {
        cond.lock()
        board[rank] = block
        cond.unlock()
        barrier()
        cond.lock()
        let all = board
        cond.unlock()
        barrier()
        return all
    }

    /// Runs `body(rank's communicator)` on `size` threads and returns each rank's result, in rank order.
    func run<T>(_ body: @escaping @Sendable (ThreadCommunicator) -> T) -> [T] {
        let results = RankResults<T>(size)
        let done = DispatchGroup()
        for comm in communicators {
            done.enter()
            Thread {
                results.set(comm.rank, body(comm))
                done.leave()
            }.start()
        }
        done.wait()
        return results.values.map { $0! }
    }
}

/// Each rank's result of `ThreadGroup.run`, written under a lock.
final class RankResults<T>: @unchecked Sendable {
    private(set) var values: [T?]
    private let lock = NSLock()

    init(_ n: Int) { values = [T?](repeating: nil, count: n) }

    func set(_ rank: Int, _ value: T) {
        lock.lock()
        values[rank] = value
        lock.unlock()
    }
}

final class ThreadCommunicator: Communicator, @unchecked Sendable {
    let rank: Int
    let group: ThreadGroup
    var size: Int { group.size }
    var localRank: Int { rank }
    var localSize: Int { group.size }
    var hostName: String { "localhost" }

    init(rank: Int, group: ThreadGroup) {
        self.rank = rank
        self.group = group
    }

    func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws {
        let all = group.exchange(rank: rank, Array(UnsafeRawBufferPointer(start: buffer, count: count * type.size)))
        switch type {
        case .float: reduce(Float.self, all, into: buffer, count: count, op: op)
        case .double: reduce(Double.self, all, into: buffer, count: count, op: op)
        case .int64: reduce(Int64.self, all, into: buffer, count: count, op: op)
        case .byte: reduce(UInt8.self, all, into: buffer, count: count, op: op)
        }
    }

    func reduce<T: Numeric & Comparable>(
        _: T.Type, _ blocks: [[UInt8]], into buffer: UnsafeMutableRawPointer,
        count: Int, op: ReduceOp
    ) {
        let out = buffer.bindMemory(to: T.self, capacity: count)
        for i in 0..<count {
            let at = i * MemoryLayout<T>.stride
            let values = blocks.map { $0.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) } }
            switch op {
            case .sum: out[i] = values.reduce(0, +)
            case .max: out[i] = values.max()!
            case .min: out[i] = values.min()!
            }
        }
    }

    func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int) throws {
        let bytes = count * type.size
        let mine = rank == root ? Array(UnsafeRawBufferPointer(start: buffer, count: bytes)) : []
        let all = group.exchange(rank: rank, mine)
        if rank != root && bytes > 0 {
            all[root].withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        }
    }

    func allGather(send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType) throws {
        let bytes = count * type.size
        let all = group.exchange(rank: rank, Array(UnsafeRawBufferPointer(start: send, count: bytes)))
        for (r, block) in all.enumerated() where bytes > 0 {
            block.withUnsafeBytes { (recv + r * bytes).copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        }
    }

    func barrier() throws { group.barrier() }

    func abort(code: Int32) -> Never { exit(code) }
}
