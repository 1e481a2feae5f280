import XCTest
import Distributed
import TestSupport

final class MPIShimTests: XCTestCase {
    /// Real mpirun, two ranks: every collective of the shim checked with arithmetic expectations.
    func testTwoRankSmokeUnderMpirun() throws {
        let exe = w2vbertExecutable()
        let r = try runCommand(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", exe, "mpi-check"],
                               environment: mpirunEnvironment, timeout: 120)
        XCTAssertFalse(r.timedOut, "mpirun timed out:\n\(r.output)")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("mpi-check rank 0/2") && r.output.contains("mpi-check rank 1/2"), r.output)
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
