/// Every collective of the communicator exercised with values whose results are plain arithmetic, so a
/// wrong reduction, a wrong root or a truncated buffer fails loudly (`w2vbert check mpi`). Every rank must
/// call it. Returns the names of the collectives that gave a wrong result (empty: all correct).
public func checkCollectives(_ comm: Communicator) throws -> [String] {
    let r = comm.rank
    let n = comm.size
    var failures: [String] = []
    func expect(_ ok: Bool, _ what: String) {
        if !ok { failures.append(what) }
    }
    // Sum of floats: element i on rank r is r + i → Σ_r (r + i) = n(n−1)/2 + n·i.
    var f = (0..<1000).map { Float(r + $0) }
    try comm.allReduce(&f, op: .sum)
    expect(f.enumerated().allSatisfy { $0.element == Float(n * (n - 1) / 2 + n * $0.offset) }, "allreduce sum float")
    var dv = [Double(r) + 0.5]
    try comm.allReduce(&dv, op: .max)
    expect(dv[0] == Double(n - 1) + 0.5, "allreduce max double")
    var iv: [Int64] = [Int64(r) * 1_000_000_000_000, 1]
    try comm.allReduce(&iv, op: .sum)
    expect(iv[0] == Int64(n * (n - 1) / 2) * 1_000_000_000_000 && iv[1] == Int64(n), "allreduce sum int64")
    let root = n - 1
    let payload = try comm.broadcast(bytes: r == root ? Array("hello from \(root)".utf8) : [], root: root)
    expect(String(decoding: payload, as: UTF8.self) == "hello from \(root)", "broadcast bytes")
    var mine = Int64(r * 7)
    var all = [Int64](repeating: -1, count: n)
    try all.withUnsafeMutableBytes { dst in
        try withUnsafeBytes(of: &mine) {
            try comm.allGather(send: $0.baseAddress!, recv: dst.baseAddress!, count: 1, type: .int64)
        }
    }
    expect(all == (0..<n).map { Int64($0 * 7) }, "allgather int64")
    try comm.barrier()
    return failures
}
