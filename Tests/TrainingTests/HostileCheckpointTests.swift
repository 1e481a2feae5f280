import XCTest
import Foundation
import Training
import Tensor
import TestSupport

/// Hostile and damaged safetensors files and checkpoints are refused with a message naming the
/// tensor or field; no allocation is sized by a header field.
final class HostileSafeTensorsTests: XCTestCase {
    /// A file from a raw JSON header and data bytes (the header is not checked here: that is the point).
    func file(header: String, data: [UInt8], headerLength: UInt64? = nil) -> Data {
        var d = Data()
        var n = (headerLength ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
        d.append(Data(header.utf8))
        d.append(contentsOf: data)
        return d
    }

    func refuses(_ bytes: Data, _ needles: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensors.parse(bytes, path: "hostile.safetensors"), file: file, line: line) { e in
            for n in needles + ["hostile.safetensors"] {
                XCTAssert("\(e)".contains(n), "expected '\(n)' in: \(e)", file: file, line: line)
            }
        }
    }

    func testHostileHeadersAreRefusedByName() throws {
        let eight = [UInt8](repeating: 0, count: 8)
        let ok = file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: eight)
        XCTAssertEqual(try SafeTensors.parse(ok, path: "ok").entries["a"]?.shape, [2])
        // A header length of 2^60 is refused before anything is allocated from it.
        refuses(file(header: "{}", data: [], headerLength: 1 << 60), ["header length 1152921504606846976"])
        refuses(file(header: "{}", data: [], headerLength: UInt64.max), ["header length"])
        refuses(file(header: "[1,2]", data: []), ["not a JSON object"])
        refuses(
            file(header: #"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, data: eight), ["'a'", "dtype F16"])
        refuses(file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight), ["'a'", "[3]"])
        refuses(
            file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, data: eight),
            ["'a'", "outside the data"])
        refuses(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, data: eight), ["'a'"])
        refuses(
            file(
                header:
                    #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                data: eight),
            ["overlaps"])
        refuses(
            file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight),
            ["not contiguous", "'a'"])
        refuses(
            file(
                header: #"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776,16],"data_offsets":[0,8]}}"#,
                data: eight),
            ["'a'", "impossible shape"])
        refuses(
            file(header: #"{"a":{"dtype":"F32","shape":[-2,-1],"data_offsets":[0,8]}}"#, data: eight),
            ["'a'", "impossible shape"])
        refuses(
            file(header: #"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: eight),
            ["malformed entry 'a'"])
        refuses(
            file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,1e300]}}"#, data: eight),
            ["malformed entry 'a'"])
        refuses(file(header: #"{"__metadata__":{"k":1}}"#, data: []), ["__metadata__"])
        // Values: NaN and infinities are named with the tensor and element.
        let nan = Float.nan.bitPattern, inf = Float.infinity.bitPattern
        for (bits, word) in [(nan, "NaN"), (inf, "+infinity"), ((-Float.infinity).bitPattern, "-infinity")] {
            var data = eight
            withUnsafeBytes(of: bits.littleEndian) { for i in 0..<4 { data[4 + i] = $0[i] } }
            refuses(
                file(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data),
                ["tensor 'w' holds \(word) at element 1"])
        }
        _ = inf
    }
}

final class HostileCheckpointManagerTests: XCTestCase {
    let tensors = CheckpointTensors(
        entries: [TensorEntry(name: "w", shape: [2, 2]), TensorEntry(name: "b", shape: [3])], offsets: [0, 4])
    let yaml =
        "model:\n  dim: 144\n  heads: 4\n  dropout: 0.1\nquantizer:\n  groups: 1\n  tau_start: 2.0\ntrain:\n  seed: 1\n"

    func save(_ m: CheckpointManager, step: Int, value: Float, config: String) throws {
        let p = FloatBuffer([Float](repeating: value, count: 7)), a = FloatBuffer([Float](repeating: value, count: 7))
        var state = TrainerState()
        state.config = config
        try m.save(step: step, tensors: tensors, parameters: p.ptr, adamM: a.ptr, adamV: a.ptr, state: state)
    }

    func testArchitectureAndUnexpectedTensorsAndNaNFallBack() throws {
        let run = tempDir("hostile")
        let m = CheckpointManager(runDirectory: run, keepLast: 5)
        m.expectedConfigYAML = yaml
        try save(m, step: 1, value: 1, config: yaml)
        // Training-only settings may differ; the architecture may not.
        let other = yaml.replacingOccurrences(of: "dropout: 0.1", with: "dropout: 0.0").replacingOccurrences(
            of: "seed: 1", with: "seed: 2")
        XCTAssertNil(architectureDifference(expected: yaml, found: other))
        XCTAssertEqual(
            architectureDifference(expected: yaml, found: yaml.replacingOccurrences(of: "heads: 4", with: "heads: 8")),
            "model.heads is 8 in the checkpoint, 4 in this run")
        try save(m, step: 2, value: 2, config: yaml.replacingOccurrences(of: "heads: 4", with: "heads: 8"))
        let buf = FloatBuffer([Float](repeating: 0, count: 7)), mm = FloatBuffer([Float](repeating: 0, count: 7)),
            vv = FloatBuffer([Float](repeating: 0, count: 7))
        var got = try XCTUnwrap(try m.loadLatest(tensors: tensors, parameters: buf.ptr, adamM: mm.ptr, adamV: vv.ptr))
        XCTAssertEqual(got.step, 1)
        XCTAssert(
            got.warnings.joined().contains("model.heads is 8 in the checkpoint, 4 in this run"), "\(got.warnings)")
        // A NaN in the newest checkpoint's parameters: named, and the previous one is used.
        try save(m, step: 3, value: .nan, config: yaml)
        got = try XCTUnwrap(try m.loadLatest(tensors: tensors, parameters: buf.ptr, adamM: mm.ptr, adamV: vv.ptr))
        XCTAssertEqual(got.step, 1)
        XCTAssert(got.warnings.joined().contains("tensor 'w' holds NaN at element 0"), "\(got.warnings)")
        XCTAssertEqual(buf[0], 1)
        // A renamed tensor: the missing name is named; a tensor the model does not have is named.
        let renamed = CheckpointTensors(
            entries: [TensorEntry(name: "w", shape: [2, 2]), TensorEntry(name: "bias", shape: [3])], offsets: [0, 4])
        XCTAssertThrowsError(try m.validate(directory: run + "/checkpoints/step-00000001", tensors: renamed)) {
            XCTAssert("\($0)".contains("missing tensor 'bias'"), "\($0)")
        }
        let fewer = CheckpointTensors(entries: [TensorEntry(name: "w", shape: [2, 2])], offsets: [0])
        XCTAssertThrowsError(try m.validate(directory: run + "/checkpoints/step-00000001", tensors: fewer)) {
            XCTAssert("\($0)".contains("unexpected tensor 'b'"), "\($0)")
        }
    }
}

/// The commands on a real run whose newest checkpoint is damaged: a NaN in a parameter, and a trainer.json
/// holding another preset's config. train and validate fall back to the previous checkpoint naming the
/// problem; embed, inspect and compare refuse with status 1 naming the tensor or field.
final class HostileCheckpointCommandTests: XCTestCase {
    static let exe = DistributedTrainingTests.exe

    func temp(_ tag: String) -> String { temporaryPath("w2v", tag) }

    @discardableResult
    func train(runDir: String, steps: Int, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let args =
            [
                Self.exe, "train", "--train", DistributedTrainingTests.slice, "--run-dir", runDir, "--max-steps",
                "\(steps)"
            ]
            + DistributedTrainingTests.common
        let r = try runCommand(args, environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 300)
        XCTAssertFalse(r.timedOut, file: file, line: line)
        XCTAssertEqual(r.status, 0, r.output, file: file, line: line)
        return r.output
    }

    func copy(_ run: String, _ tag: String) throws -> String {
        let dst = temp(tag)
        try FileManager.default.copyItem(atPath: run, toPath: dst)
        return dst
    }

    func cli(_ args: [String]) throws -> (status: Int32, output: String) {
        let r = try runCommand([Self.exe] + args, environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: 120)
        XCTAssertFalse(r.timedOut)
        return (r.status, r.output)
    }

    func testDamagedNewestCheckpointIsRefusedOrSkippedByEveryCommand() throws {
        let run = temp("hostile-run")
        try train(runDir: run, steps: 10)  // checkpoints at steps 5 and 10
        let audio = try String(contentsOfFile: DistributedTrainingTests.slice, encoding: .utf8).split(separator: "\n")
        let wav = String(audio[0]) + "/" + String(audio[1].split(separator: "\t")[0])

        // 1. A NaN in the newest parameters.
        let nanRun = try copy(run, "hostile-nan")
        let model = nanRun + "/checkpoints/step-00000010/model.safetensors"
        let f = try SafeTensors.open(path: model)
        let victim = f.entries.min { $0.value.range.lowerBound < $1.value.range.lowerBound }!.key
        var bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        let at = f.dataStart + f.entries[victim]!.range.lowerBound + 4 * 3
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { for i in 0..<4 { bytes[at + i] = $0[i] } }
        try bytes.write(to: URL(fileURLWithPath: model))
        let named = "tensor '\(victim)' holds NaN at element 3"
        var r = try cli(["inspect", nanRun])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("CORRUPT") && r.output.contains(named), r.output)
        r = try cli(["embed", "--checkpoint", nanRun + "/checkpoints/step-00000010", wav, "--out", nanRun + "/e.npy"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains(named), r.output)
        r = try cli(["compare", nanRun, run])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains(named), r.output)
        r = try cli([
            "validate", "--run-dir", nanRun, "--valid", DistributedTrainingTests.slice, "--set", "train.valid_batches=1"
        ])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssert(
            r.output.contains(named) && r.output.contains("falling back") && r.output.contains("valid step 5"), r.output
        )
        // --init-from a damaged checkpoint: refused at start, naming the tensor.
        let fresh = temp("hostile-init")
        r = try cli([
            "train", "--train", DistributedTrainingTests.slice, "--run-dir", fresh, "--preset", "tiny",
            "--init-from", nanRun + "/checkpoints/step-00000010"
        ])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("--init-from") && r.output.contains(named), r.output)
        var out = try train(runDir: nanRun, steps: 12)
        XCTAssert(out.contains(named) && out.contains("falling back"), out)
        var events = try String(contentsOfFile: nanRun + "/metrics.jsonl", encoding: .utf8)
        XCTAssert(
            events.split(separator: "\n").contains { $0.contains("\"event\":\"resume\"") && $0.contains("\"step\":5") },
            events)

        // 2. trainer.json of the newest checkpoint holds the small preset's config.
        let otherRun = try copy(run, "hostile-preset")
        let statePath = otherRun + "/checkpoints/step-00000010/trainer.json"
        var state = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as? [String: Any])
        let small = try cli(["config", "--preset", "small"])
        state["config"] =
            small.output.split(separator: "\n").filter { !$0.hasPrefix("# ") || $0.hasPrefix("# w2vbert") }.joined(
                separator: "\n") + "\n"
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        r = try cli([
            "embed", "--checkpoint", otherRun + "/checkpoints/step-00000010", wav, "--out", otherRun + "/e.npy"
        ])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("tensor '") && r.output.contains("has shape"), r.output)
        r = try cli(["inspect", otherRun + "/checkpoints/step-00000010"])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("CORRUPT"), r.output)
        r = try cli(["compare", otherRun, run])
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssert(r.output.contains("has shape"), r.output)
        out = try train(runDir: otherRun, steps: 12)
        XCTAssert(out.contains("trainer.json: config field model.") && out.contains("falling back"), out)
        events = try String(contentsOfFile: otherRun + "/metrics.jsonl", encoding: .utf8)
        XCTAssert(
            events.split(separator: "\n").contains { $0.contains("\"event\":\"resume\"") && $0.contains("\"step\":5") },
            events)
    }
}
