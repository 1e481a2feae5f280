import XCTest
import Foundation
import Training
import Tensor
import TestSupport

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

func tempDir(_ tag: String) -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("w2v-\(tag)-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

final class SafeTensorsTests: XCTestCase {
    func testReadsAFileWrittenByPythonSafetensors() throws {
        let f = try SafeTensors.open(path: fixtures + "/python.safetensors")
        XCTAssertEqual(f.entries["a.weight"]?.shape, [2, 3])
        XCTAssertEqual(try f.array("a.weight"), [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try f.array("b"), [-1.5])
        XCTAssertEqual(f.metadata["made_by"], "safetensors")
    }

    func testRoundTripAndRejectsCorruption() throws {
        let dir = tempDir("st")
        let path = dir + "/m.safetensors"
        let a: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [7]
        try SafeTensors.write(
            path: path, entries: [TensorEntry(name: "x.weight", shape: [3, 2]), TensorEntry(name: "y", shape: [1])],
            metadata: ["k": "v"]
        ) { i in i == 0 ? a.withUnsafeBufferPointer { $0.baseAddress! } : b.withUnsafeBufferPointer { $0.baseAddress! }
        }
        let f = try SafeTensors.open(path: path)
        XCTAssertEqual(try f.array("x.weight"), a)
        XCTAssertEqual(try f.array("y"), b)
        // Header length is a multiple of 8 (alignment, as the format asks).
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(raw.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8, 0)
        // Truncated file: a clear error naming the file.
        try raw.prefix(raw.count - 3).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafeTensors.open(path: path)) {
            XCTAssert("\($0)".contains(path) && "\($0)".contains("truncated"), "\($0)")
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SafeTensors.open(path: path))
        // Wrong shape on read is named.
        try SafeTensors.write(
            path: path, entries: [TensorEntry(name: "x.weight", shape: [3, 2])],
            data: { _ in a.withUnsafeBufferPointer { $0.baseAddress! } })
        var out = [Float](repeating: 0, count: 6)
        XCTAssertThrowsError(
            try out.withUnsafeMutableBufferPointer {
                try SafeTensors.open(path: path).read("x.weight", shape: [2, 3], into: $0.baseAddress!)
            }
        ) {
            XCTAssert("\($0)".contains("x.weight") && "\($0)".contains("[3, 2]"), "\($0)")
        }
    }
}

final class CheckpointManagerTests: XCTestCase {
    let tensors = CheckpointTensors(
        entries: [TensorEntry(name: "w", shape: [2, 2]), TensorEntry(name: "b", shape: [3])], offsets: [0, 4])

    func save(_ m: CheckpointManager, step: Int, value: Float, valid: Double? = nil) throws {
        let p = FloatBuffer([Float](repeating: value, count: 7)),
            a = FloatBuffer([Float](repeating: value + 1, count: 7)),
            v = FloatBuffer([Float](repeating: value + 2, count: 7))
        try m.save(
            step: step, tensors: tensors, parameters: p.ptr, adamM: a.ptr, adamV: v.ptr, state: TrainerState(),
            validLoss: valid)
    }

    func testSaveLoadKeepLastAndBest() throws {
        let run = tempDir("ckpt")
        let m = CheckpointManager(runDirectory: run, keepLast: 2)
        try save(m, step: 10, value: 1, valid: 0.5)  // the best
        try save(m, step: 20, value: 2, valid: 0.9)
        try save(m, step: 30, value: 3)
        try save(m, step: 40, value: 4)
        XCTAssertEqual(m.list().map { $0.step }, [40, 30, 10], "last 2 plus the best")
        XCTAssertEqual(m.latestName, "step-00000040")
        let p = FloatBuffer(count: 7), a = FloatBuffer(count: 7), v = FloatBuffer(count: 7)
        let got = try XCTUnwrap(try m.loadLatest(tensors: tensors, parameters: p.ptr, adamM: a.ptr, adamV: v.ptr))
        XCTAssertEqual(got.step, 40)
        XCTAssertEqual(p.array, [Float](repeating: 4, count: 7))
        XCTAssertEqual(a.array, [Float](repeating: 5, count: 7))
        XCTAssertEqual(v.array, [Float](repeating: 6, count: 7))
        XCTAssert(got.warnings.isEmpty)
        // No stray temporary folders.
        XCTAssertFalse(
            try FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints").contains { $0.contains(".tmp") })
    }

    func testTruncatedNewestFallsBackToPreviousWithWarning() throws {
        let run = tempDir("ckpt2")
        let m = CheckpointManager(runDirectory: run, keepLast: 3)
        try save(m, step: 1, value: 1)
        try save(m, step: 2, value: 2)
        let victim = run + "/checkpoints/step-00000002/model.safetensors"
        let d = try Data(contentsOf: URL(fileURLWithPath: victim))
        try d.prefix(d.count / 2).write(to: URL(fileURLWithPath: victim))
        let p = FloatBuffer(count: 7), a = FloatBuffer(count: 7), v = FloatBuffer(count: 7)
        let got = try XCTUnwrap(try m.loadLatest(tensors: tensors, parameters: p.ptr, adamM: a.ptr, adamV: v.ptr))
        XCTAssertEqual(got.step, 1)
        XCTAssertEqual(p.array, [Float](repeating: 1, count: 7))
        XCTAssertEqual(got.warnings.count, 1)
        XCTAssert(
            got.warnings[0].contains("step-00000002") && got.warnings[0].contains("falling back"), got.warnings[0])
        // A config mismatch (other shapes) is named too.
        let other = CheckpointTensors(entries: [TensorEntry(name: "w", shape: [4])], offsets: [0])
        XCTAssertThrowsError(try m.validate(directory: run + "/checkpoints/step-00000001", tensors: other)) {
            XCTAssert("\($0)".contains("'w'"), "\($0)")
        }
        // Nothing usable at all: an error listing why, not a silent fresh start.
        try "garbage".write(toFile: run + "/checkpoints/step-00000001/trainer.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try m.loadLatest(tensors: tensors, parameters: p.ptr, adamM: a.ptr, adamV: v.ptr))
    }

    func testPythonCanReadOurCheckpointWhenAvailable() throws {
        // The interop check in Python runs where W2VBERT_TEST_PYTHON names one (developer machines); CI checks the
        // format through the Python-written fixture above.
        let py = ProcessInfo.processInfo.environment["W2VBERT_TEST_PYTHON"] ?? ""  // a Python with these packages
        guard FileManager.default.isExecutableFile(atPath: py) else { throw XCTSkip("no Python with safetensors here") }
        let run = tempDir("ckpt3")
        let m = CheckpointManager(runDirectory: run, keepLast: 1)
        try save(m, step: 5, value: 2.5)
        let r = try runCommand(
            [
                py, "-c",
                "from safetensors.numpy import load_file; d = load_file('\(run)/checkpoints/step-00000005/model.safetensors'); print(sorted(d), d['w'].shape, float(d['b'][0]))"
            ], timeout: 60)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("['b', 'w'] (2, 2) 2.5"), r.output)
    }
}

final class TensorBoardTests: XCTestCase {
    func testReadsTensorBoardsOwnFile() throws {
        let s = try readTensorBoardScalars(path: fixtures + "/python.tfevents")
        XCTAssertEqual(s.filter { $0.tag == "loss" }.map { $0.step }, [1, 2, 10])
        XCTAssertEqual(s.filter { $0.tag == "loss" }.map { $0.value }, [0.5, 0.25, -3.0])
    }

    func testWriteAndReadBackWithCRCs() throws {
        let dir = tempDir("tb")
        let w = try TensorBoardWriter(directory: dir, host: "test")
        w.add(step: 1, scalars: [("train/loss", 4.5), ("train/lr", 1e-4)])
        w.add(step: 2, scalars: [("train/loss", 4.0), ("nan/skipped", .nan)])
        w.flush()
        let s = try readTensorBoardScalars(path: w.path)
        XCTAssertEqual(s.map { $0.tag }, ["train/loss", "train/lr", "train/loss"])
        XCTAssertEqual(s.map { $0.step }, [1, 1, 2])
        XCTAssertEqual(s[2].value, 4.0)
        // Flip one byte: the CRC must catch it.
        var d = try Data(contentsOf: URL(fileURLWithPath: w.path))
        d[d.count - 6] ^= 0xff
        try d.write(to: URL(fileURLWithPath: w.path))
        XCTAssertThrowsError(try readTensorBoardScalars(path: w.path))
    }

    func testEventAccumulatorOpensOurFileWhenAvailable() throws {
        let py = ProcessInfo.processInfo.environment["W2VBERT_TEST_PYTHON"] ?? ""  // a Python with these packages
        guard FileManager.default.isExecutableFile(atPath: py) else { throw XCTSkip("no Python with tensorboard here") }
        let dir = tempDir("tb2")
        let w = try TensorBoardWriter(directory: dir, host: "test")
        for i in 1...5 { w.add(step: i, scalars: [("train/loss", 5.0 / Double(i))]) }
        w.flush()
        let r = try runCommand([py, fixtures + "/check_tensorboard.py", dir, "train/loss"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(r.output.contains("train/loss: 5 points, last step 5 value 1"), r.output)
    }
}
