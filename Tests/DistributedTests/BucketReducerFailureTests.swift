import XCTest
import Foundation
import Distributed

/// A communicator of two "ranks" whose all-reduce always fails, counting the calls.
final class FailingCommunicator: Communicator, @unchecked Sendable {
    let lock = NSLock()
    var calls = 0
    var rank: Int { 0 }
    var size: Int { 2 }
    var localRank: Int { 0 }
    var localSize: Int { 2 }
    var hostName: String { "test" }
    struct Failed: Error {}
    func allReduce(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, op: ReduceOp) throws {
        lock.lock()
        calls += 1
        lock.unlock()
        throw Failed()
    }
    func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, type: CollectiveType, root: Int) throws {}
    func allGather(send: UnsafeRawPointer, recv: UnsafeMutableRawPointer, count: Int, type: CollectiveType) throws {}
    func barrier() throws {}
    func abort(code: Int32) -> Never { fatalError("abort \(code)") }
}

/// After a failed all-reduce the bucket reducer issues nothing more in that step (it used to
/// re-issue the same collective in a loop until wait() noticed), and wait() reports the failure.
final class BucketReducerFailureTests: XCTestCase {
    func testAFailedAllReduceIsIssuedOnceAndReported() throws {
        let comm = FailingCommunicator()
        let coll = Collectives(comm: comm, timeout: 60)
        let grads = UnsafeMutablePointer<Float>.allocate(capacity: 8)
        defer { grads.deallocate() }
        let reducer = GradientBucketReducer(collectives: coll, gradients: grads, buckets: [0..<4, 4..<8])
        reducer.begin()
        reducer.markReady(0)
        Thread.sleep(forTimeInterval: 0.3)  // the thread fails bucket 0 and must then stay idle
        XCTAssertThrowsError(try reducer.wait())
        Thread.sleep(forTimeInterval: 0.2)
        comm.lock.lock()
        let calls = comm.calls
        comm.lock.unlock()
        XCTAssertEqual(calls, 1, "the failed collective was re-issued")
    }
}
