import CMPI

/// Element types a collective moves.
public enum CollectiveType: Int32, Sendable {
    case float = 0, double = 1, int64 = 2, byte = 3
    public var size: Int {
        switch self {
        case .float: 4
        case .byte: 1
        default: 8
        }
    }
}
public enum ReduceOp: Int32, Sendable { case sum = 0, max = 1, min = 2 }

/// An MPI failure with MPI's own message and the collective that failed.
public struct MPIError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let call: String
    public let message: String
    public var description: String { "MPI error in \(call) (code \(code)): \(message)" }
}

/// The one place MPI return codes become Swift errors.
@inline(__always)
func check(_ code: Int32, _ call: @autoclosure () -> String) throws {
    if code == 0 { return }
    var buf = [CChar](repeating: 0, count: 512)
    w2v_mpi_error_string(code, &buf, Int32(buf.count))
    throw MPIError(
        code: code, call: call(),
        message: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
}

/// What the trainer needs from the process group. Two implementations: `MPICommunicator` (under
/// mpirun or srun) and `SingleProcessCommunicator` (plain runs and `swift test`), so the same trainer
/// code runs either way.
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    var localRank: Int { get }
    var localSize: Int { get }
    var hostName: String { get }
    /// In-place all-reduce of `count` elements.
    func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws
    func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int) throws
    /// recv holds count·size elements, rank-major.
    func allGather(send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType) throws
    func barrier() throws
    /// Ends every rank of the job with this exit code.
    func abort(code: Int32) -> Never
}

public extension Communicator {
    var isRoot: Bool { rank == 0 }
    func allReduce(_ values: inout [Float], op: ReduceOp = .sum) throws {
        let n = values.count
        try values.withUnsafeMutableBytes { try allReduce($0.baseAddress!, count: n, type: .float, op: op) }
    }
    func allReduce(_ values: inout [Double], op: ReduceOp = .sum) throws {
        let n = values.count
        try values.withUnsafeMutableBytes { try allReduce($0.baseAddress!, count: n, type: .double, op: op) }
    }
    func allReduce(_ values: inout [Int64], op: ReduceOp = .sum) throws {
        let n = values.count
        try values.withUnsafeMutableBytes { try allReduce($0.baseAddress!, count: n, type: .int64, op: op) }
    }
    func allReduce(_ value: Double, op: ReduceOp = .sum) throws -> Double {
        var v = [value]
        try allReduce(&v, op: op)
        return v[0]
    }
    func allReduce(_ value: Int64, op: ReduceOp = .sum) throws -> Int64 {
        var v = [value]
        try allReduce(&v, op: op)
        return v[0]
    }
    /// Broadcasts bytes from root (lengths first, so other ranks need not know the size).
    func broadcast(bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var n = [Int64(bytes.count)]
        try n.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: 1, type: .int64, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(n[0]))
        if n[0] > 0 {
            try out.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: Int(n[0]), type: .byte, root: root) }
        }
        return out
    }
}

/// One process, no MPI: collectives are identities.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localRank: Int { 0 }
    public var localSize: Int { 1 }
    public var hostName: String { "localhost" }
    public func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int) throws {}
    public func allGather(
        send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType
    ) throws {
        recv.copyMemory(from: send, byteCount: count * type.size)
    }
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

/// MPI_COMM_WORLD through the C shim, initialised with MPI_THREAD_MULTIPLE (a background thread
/// all-reduces gradient buckets while backward runs).
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    public let hostName: String
    public let threadLevel: Int

    public init() throws {
        var provided: Int32 = 0
        try check(w2v_mpi_init(&provided), "MPI_Init_thread")
        var r: Int32 = 0, s: Int32 = 0, lr: Int32 = 0, ls: Int32 = 0
        try check(w2v_mpi_rank(&r), "MPI_Comm_rank")
        try check(w2v_mpi_size(&s), "MPI_Comm_size")
        try check(w2v_mpi_local_rank(&lr, &ls), "MPI_Comm_split_type")
        var buf = [CChar](repeating: 0, count: 256)
        _ = w2v_mpi_processor_name(&buf, 256)
        rank = Int(r)
        size = Int(s)
        localRank = Int(lr)
        localSize = Int(ls)
        hostName = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        threadLevel = Int(provided)
    }

    /// True when this process was started by mpirun/srun (so MPI should be initialised).
    public static var launchedUnderMPI: Bool {
        let env = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        return env.contains { getenv($0) != nil }
    }

    public func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws {
        try check(w2v_mpi_allreduce(buffer, Int64(count), type.rawValue, op.rawValue), "MPI_Allreduce")
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int) throws {
        try check(w2v_mpi_bcast(buffer, Int64(count), type.rawValue, Int32(root)), "MPI_Bcast")
    }
    public func allGather(
        send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType
    ) throws {
        try check(w2v_mpi_allgather(send, recv, Int64(count), type.rawValue), "MPI_Allgather")
    }
    public func barrier() throws { try check(w2v_mpi_barrier(), "MPI_Barrier") }
    public func abort(code: Int32) -> Never {
        w2v_mpi_abort(code)
        exit(code)
    }
    public func finalize() { _ = w2v_mpi_finalize() }
}

/// MPI when launched by mpirun/srun, otherwise a single process.
public func makeCommunicator() throws -> Communicator {
    MPICommunicator.launchedUnderMPI ? try MPICommunicator() : SingleProcessCommunicator()
}

#if canImport(Glibc)
    import Glibc
#endif
