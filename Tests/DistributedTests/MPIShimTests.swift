import XCTest
import Distributed
import TestSupport

final class MPIShimTests: XCTestCase {
    /// Real mpirun, two ranks: every collective of the shim checked with arithmetic expectations.
    func testTwoRankSmokeUnderMpirun() throws {
        let exe = w2vbertExecutable()
        let r = try runCommand(
            ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", exe, "check", "mpi"],
            environment: mpirunEnvironment, timeout: 120)
        XCTAssertFalse(r.timedOut, "mpirun timed out:\n\(r.output)")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("check mpi: rank 0/2") && r.output.contains("check mpi: rank 1/2"), r.output)
        XCTAssertEqual(r.output.components(separatedBy: ": ok").count - 1, 2, r.output)
    }

    /// Without mpirun the same code runs on the single-process communicator.
    func testSingleProcessCommunicator() throws {
        let c = SingleProcessCommunicator()
        var v: [Float] = [1, 2, 3]
        try c.allReduce(&v)
        XCTAssertEqual(v, [1, 2, 3])
        XCTAssertEqual(try c.broadcast(bytes: [1, 2]), [1, 2])
        XCTAssertEqual(c.size, 1)
    }
}

final class GradientAllReduceTests: XCTestCase {
    /// The background bucketed all-reduce gives exact sums on 2 real ranks.
    func testBucketedAllReduceExactUnderMpirun() throws {
        let mpirun = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", w2vbertExecutable()]
        let r = try runCommand(mpirun + ["check", "dist"], environment: mpirunEnvironment, timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertEqual(r.output.components(separatedBy: "max error 0.0").count - 1, 2, r.output)
    }

    /// A rank that never joins a collective: the watchdog aborts the job, naming the collective,
    /// with exit status 78, instead of hanging.
    func testWatchdogNamesTheSkippedCollective() throws {
        let t0 = Date()
        let mpirun = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", w2vbertExecutable()]
        let hook = ["--timeout", "3", "--skip-collective", "2", "--skip-rank", "1"]
        let r = try runCommand(mpirun + ["check", "dist"] + hook, environment: mpirunEnvironment, timeout: 60)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertEqual(r.status, 78, r.output)
        XCTAssert(r.output.contains("rank 0"), r.output)
        XCTAssert(r.output.contains("collective #2 'gradient bucket 2' has not completed"), r.output)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 30)
    }

    func testBucketPlanCoversEverythingInReverse() {
        let tensors = [0..<10, 10..<30, 30..<31, 31..<60]
        let b = GradientBucketReducer.plan(tensorRanges: tensors, bucketFloats: 25)
        XCTAssertEqual(b, [31..<60, 0..<31])
        XCTAssertEqual(
            GradientBucketReducer.plan(tensorRanges: tensors, bucketFloats: 1),
            [31..<60, 30..<31, 10..<30, 0..<10])
    }
}
