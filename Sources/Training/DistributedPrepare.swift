// `w2vbert prepare` over the ranks of a communicator: the scan/check/merge protocol.
//
//   1. rank 0 scans (CorpusScan: each file once); the sorted list, or the scan's error, goes to every rank
//      (one byte broadcast: a tag byte, then the NUL-separated paths or the error message);
//   2. rank r checks files i ≡ r (mod size), on `jobs` threads;
//   3. every rank's results go to rank 0 (one byte broadcast per rank, `CorpusPreparer.encodeChecks`),
//      which puts each at its file's index, splits, and writes train.tsv / valid.tsv.
// Steps 1 and 3 see only the sorted list and the per-file results, so the manifests are byte-identical for
// any number of ranks and threads. With a single-process communicator the broadcasts are identities.

import Audio
import Distributed
import Foundation
import Tensor

/// Thrown on ranks other than 0 when rank 0 failed (its scan, or the merge): rank 0 reports the error.
public struct PrepareFailedOnRankZero: Error, CustomStringConvertible {
    public let message: String
    public var description: String { "rank 0: \(message)" }
}

extension CorpusPreparer {
    /// Scans `root`, checks its files shared over the ranks of `communicator`, and on rank 0 writes
    /// `out`/train.tsv and `out`/valid.tsv. Returns the result on rank 0, nil on the others.
    /// On rank 0, `scanned(scan, seconds)` is called once the list is known and `progress(done, total)`
    /// after each of rank 0's files. Throws rank 0's `AudioError` (scan, merge, writing) on rank 0,
    /// `PrepareFailedOnRankZero` on the others when the scan failed, and `MPIError` from the collectives.
    public func prepare(
        root: String, out: String, communicator comm: Communicator,
        scanned: ((CorpusScan, Double) -> Void)? = nil,
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Result? {
        let absRoot = Self.absoluteRoot(root)
        let t0 = monotonicSeconds()
        let scan = try sharedScan(root: absRoot, communicator: comm)
        if comm.rank == 0 { scanned?(scan, monotonicSeconds() - t0) }
        let files = scan.files
        let mine = Array(stride(from: comm.rank, to: files.count, by: comm.size))
        let settled = self.settled(root: absRoot, scan: scan)
        let checks = settled.checkAll(
            root: absRoot, files: files, indices: mine, progress: comm.rank == 0 ? progress : nil)
        guard let all = try gatherChecks(checks, files: files, communicator: comm) else { return nil }
        let result = settled.assemble(root: absRoot, scan: scan, checks: all)
        try result.writeManifests(to: out)
        return result
    }

    /// Step 1: rank 0's scan on every rank (other ranks get the file list only, no duplicates).
    func sharedScan(root: String, communicator comm: Communicator) throws -> CorpusScan {
        var scan = CorpusScan(files: [])
        var scanError: AudioError? = nil
        if comm.rank == 0 {
            do { scan = try self.scan(root: root) } catch { scanError = error }
        }
        if comm.size > 1 {
            var payload = [UInt8]()
            if comm.rank == 0 {
                if let e = scanError {
                    payload = [1] + Array(e.message.utf8)
                } else {
                    payload = [0] + Array(scan.files.joined(separator: "\0").utf8)
                }
            }
            payload = try comm.broadcast(bytes: payload, root: 0)
            let body = String(decoding: payload.dropFirst(), as: UTF8.self)
            if comm.rank != 0 {
                if payload.first == 1 { throw PrepareFailedOnRankZero(message: body) }
                let paths = body.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
                scan.files = body.isEmpty ? [] : paths
            }
        }
        if let scanError { throw scanError }
        return scan
    }

    /// Step 3: every rank's `checks` (of files i ≡ rank mod size) to rank 0, in file order there; nil on
    /// the other ranks.
    func gatherChecks(_ checks: [Check], files: [String], communicator comm: Communicator) throws -> [Check]? {
        if comm.size == 1 { return checks }
        var received = [[UInt8]]()
        let mineBytes = Self.encodeChecks(checks)
        for r in 0..<comm.size {
            let bytes = try comm.broadcast(bytes: r == comm.rank ? mineBytes : [], root: r)
            if comm.rank == 0 { received.append(bytes) }
        }
        if comm.rank != 0 { return nil }
        var all = [Check](repeating: .success([]), count: files.count)
        for r in 0..<comm.size {
            let indices = Array(stride(from: r, to: files.count, by: comm.size))
            let got = try Self.decodeChecks(received[r], paths: indices.map { files[$0] })
            for (k, i) in indices.enumerated() { all[i] = got[k] }
        }
        return all
    }
}
