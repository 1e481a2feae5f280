import XCTest
import Foundation
import Training
import TestSupport

/// The disk fills up while a checkpoint is written. The run folder is a 40 MB tmpfs (one tiny
/// checkpoint is 27.5 MB, so the second one cannot be written): the run stops with status 1 and one line
/// naming the file and the problem, `latest` still names the previous complete checkpoint, nothing
/// half-written is left to be read back, and the run resumes from that checkpoint elsewhere.
final class DiskFullTests: XCTestCase {
    func mountTmpfs(megabytes: Int) throws -> String {
        let dir = NSTemporaryDirectory() + "w2v-full-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try runCommand(["mount", "-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", dir], timeout: 30)
        if r.status != 0 {
            try? FileManager.default.removeItem(atPath: dir)
            throw XCTSkip("cannot mount a tmpfs here (needs root): \(r.output)")
        }
        addTeardownBlock {
            _ = try? runCommand(["umount", dir], timeout: 30)
            try? FileManager.default.removeItem(atPath: dir)
        }
        return dir
    }

    func testFullDiskDuringCheckpointStopsWith1AndKeepsThePreviousOne() throws {
        for ranks in [1, 2] {
            let mount = try mountTmpfs(megabytes: 40)
            let run = mount + "/run"
            var args =
                [
                    DistributedTrainingTests.exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir", run,
                    "--max-steps", "10"
                ] + DistributedTrainingTests.common + ["--set", "train.keep_last=3"]
            if ranks > 1 { args = ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] + args }
            let r = try runCommand(
                args, environment: mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }, timeout: 300)
            XCTAssertFalse(r.timedOut, r.output)
            XCTAssertEqual(r.status, 1, r.output)
            XCTAssert(
                r.output.contains("checkpoint of step 10 not written") && r.output.contains("No space left on device")
                    && r.output.contains("step-00000005) is intact"), r.output)
            let m = CheckpointManager(runDirectory: run, keepLast: 3)
            XCTAssertEqual(m.latestName, "step-00000005")
            let names = try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").sorted()
            XCTAssertFalse(names.contains { $0.contains("step-00000010") }, "\(names)")  // nothing half-written left
            // The surviving checkpoint is whole, and the run resumes from it on a disk with room.
            let inspect = try runCommand([DistributedTrainingTests.exe, "inspect", run], timeout: 60)
            XCTAssertEqual(inspect.status, 0, inspect.output)
            XCTAssert(inspect.output.contains("step-00000005  ok"), inspect.output)
            let moved = NSTemporaryDirectory() + "w2v-full-moved-\(UUID().uuidString.prefix(8))"
            addTeardownBlock { try? FileManager.default.removeItem(atPath: moved) }
            try FileManager.default.copyItem(atPath: run, toPath: moved)
            let again = try runCommand(
                [
                    DistributedTrainingTests.exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir",
                    moved,
                    "--max-steps", "10"
                ] + DistributedTrainingTests.common, environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 300)
            XCTAssertEqual(again.status, 0, again.output)
            XCTAssertEqual(CheckpointManager(runDirectory: moved, keepLast: 3).latestName, "step-00000010")
        }
    }
}
