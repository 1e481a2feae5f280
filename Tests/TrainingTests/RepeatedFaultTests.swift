import XCTest
import Foundation
import TestSupport

/// Repeated faults: launch/repeated-faults.sh SIGKILLs a random rank at random moments and rank 0
/// in the middle of checkpoint writes, 4 times during one 16-step 2-rank run under launch/restart-loop.sh,
/// then checks that the final parameters are bit-identical to an uninterrupted run of the same 16 steps.
final class RepeatedFaultTests: XCTestCase {
    func testFourSIGKILLsUnderTheRestartLoopLeaveBitIdenticalParameters() throws {
        let work = NSTemporaryDirectory() + "w2v-faults-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: work) }
        let r = try runCommand(
            ["bash", DistributedTrainingTests.repo + "/launch/repeated-faults.sh", "4", "16", "2"],
            environment: [
                "W2VBERT_BIN": DistributedTrainingTests.exe, "W2V_FAULT_DIR": work,
                "W2V_FAULT_MANIFEST": DistributedTrainingTests.slice
            ], timeout: 600)
        print(r.output)
        XCTAssertFalse(r.timedOut, r.output)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("4 of 4 kills landed") && r.output.contains("bit-identical"), r.output)
    }
}
