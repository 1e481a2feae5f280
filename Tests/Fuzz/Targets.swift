// libFuzzer targets for every parser of outside data. Built by launch/fuzz.sh together with the
// project sources they exercise (compiled into this module, instrumented with -sanitize=fuzzer,address);
// not part of the SwiftPM package. The target is chosen by W2V_FUZZ_TARGET:
//   safetensors  SafeTensors.parse on the bytes (header, offsets, shapes, values)
//   checkpoint   a checkpoint folder whose trainer.json, best.json and latest are the input (split at 0x00),
//                with valid safetensors beside them: TrainerState.decode, CheckpointManager.validate /
//                loadLatest / bestRecord / prune
//   manifest     Manifest.read of the bytes, then the global data order over its lengths
//   config       Config.load with the input as a YAML document; `--set` values from its lines after a 0x00
//   npy          Npy.decode
//   audio        AudioDecoder.load (libsndfile + libsamplerate) on the bytes as a file, whole and a crop; its seeds
//                include float and double WAVs holding NaN and ±infinity (refused with their count)
//   sequences    the series and tokens readers (Sequences.swift): the input as a CSV (all columns and two by
//                name), as FASTA and as text tokens (counted, and read with a vocabulary from the input after a
//                0x00, whole, by record and by window), and its first line as a manifest row's record/window
// Every input must end in a clean error or a success: a crash, a sanitizer report or a hang is a finding.
import Foundation
import Audio
import W2VBert

nonisolated(unsafe) var target = ""
nonisolated(unsafe) var scratch = ""
nonisolated(unsafe) var modelFile = Data(), optimizerFile = Data()
let tensors = CheckpointTensors(
    entries: [TensorEntry(name: "w", shape: [2, 2]), TensorEntry(name: "b", shape: [3])], offsets: [0, 4])

@_cdecl("LLVMFuzzerInitialize")
public func initialize(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>
) -> Int32 {
    target = ProcessInfo.processInfo.environment["W2V_FUZZ_TARGET"] ?? ""
    let known = ["safetensors", "checkpoint", "manifest", "config", "npy", "audio", "sequences"]
    guard known.contains(target) else {
        FileHandle.standardError.write(Data("W2V_FUZZ_TARGET must be one of \(known.joined(separator: ", "))\n".utf8))
        exit(2)
    }
    scratch =
        (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
        + "/w2v-fuzz-\(getpid())"
    try! FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: scratch) }
    // Valid tensor files for the checkpoint target (only its JSON/text files are fuzzed).
    let values = [Float](repeating: 0.5, count: 7)
    let m = CheckpointManager(runDirectory: scratch + "/template", keepLast: 1)
    try! values.withUnsafeBufferPointer { p in
        try m.save(
            step: 1, tensors: tensors, parameters: p.baseAddress!, adamM: p.baseAddress!, adamV: p.baseAddress!,
            state: TrainerState())
    }
    modelFile = FileManager.default.contents(atPath: scratch + "/template/checkpoints/step-00000001/model.safetensors")!
    optimizerFile = FileManager.default.contents(
        atPath: scratch + "/template/checkpoints/step-00000001/optimizer.safetensors")!
    return 0
}

func parts(_ data: Data, _ n: Int) -> [Data] {
    var out = data.split(separator: 0, maxSplits: n - 1, omittingEmptySubsequences: false).map { Data($0) }
    while out.count < n { out.append(Data()) }
    return out
}

func write(_ data: Data, _ path: String) { FileManager.default.createFile(atPath: path, contents: data) }

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ bytes: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let data = Data(bytes: bytes, count: size)
    switch target {
    case "safetensors":
        if let f = try? SafeTensors.parse(data, path: "fuzz.safetensors") {
            for (name, e) in f.entries {
                var out = [Float](repeating: 0, count: e.range.count / 4)
                _ = try? out.withUnsafeMutableBufferPointer { try f.read(name, shape: e.shape, into: $0.baseAddress!) }
            }
        }
    case "checkpoint":
        let p = parts(data, 3)
        let root = scratch + "/run/checkpoints", dir = root + "/step-00000001"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        write(modelFile, dir + "/model.safetensors")
        write(optimizerFile, dir + "/optimizer.safetensors")
        write(p[0], dir + "/trainer.json")
        write(p[1], root + "/best.json")
        write(p[2], root + "/latest")
        let m = CheckpointManager(runDirectory: scratch + "/run", keepLast: 2)
        m.expectedConfigYAML = "model:\n  dim: 4\n"
        _ = try? TrainerState.decode(p[0], path: "trainer.json")
        _ = m.latestName
        _ = m.bestRecord()
        _ = m.list()
        _ = try? m.validate(directory: dir, tensors: tensors)
        var buf = [Float](repeating: 0, count: 7), mm = buf, vv = buf
        _ = try? buf.withUnsafeMutableBufferPointer { b in
            try mm.withUnsafeMutableBufferPointer { a in
                try vv.withUnsafeMutableBufferPointer { v in
                    try m.loadLatest(
                        tensors: tensors, parameters: b.baseAddress!, adamM: a.baseAddress!, adamV: v.baseAddress!)
                }
            }
        }
        m.prune()
    case "manifest":
        let path = scratch + "/m.tsv"
        write(data, path)
        if let manifest = try? Manifest.read(path: path), !manifest.entries.isEmpty {
            let config = DataOrderConfig(seed: 7, maxSamples: 48_000, maxFrames: 1_200)
            if let order = try? DataOrder(
                lengths: manifest.entries.map { $0.samples }, config: config,
                encoderLength: { max(0, ($0 - 3) / 4) })
            {
                _ = order.plan(epoch: 0, microBatchesPerStep: 2)
            }
        }
    case "config":
        let p = parts(data, 2)
        let yaml = String(decoding: p[0], as: UTF8.self)
        let overrides = String(decoding: p[1], as: UTF8.self).split(separator: "\n").map(String.init)
        if let c = try? Config.load(preset: "tiny", yaml: [yaml], overrides: overrides) {
            // What is written must read back to the same config.
            guard let back = try? Config.load(yaml: [c.yaml]), back == c else {
                fatalError("config does not round-trip:\n\(c.yaml)")
            }
        }
    case "npy":
        _ = try? Npy.decode(data, path: "fuzz.npy")
    case "audio":
        let path = scratch + "/a.bin"
        write(data, path)
        _ = try? AudioDecoder.load(path: path)
        _ = try? AudioDecoder.load(path: path, range: 40..<2_000)
    case "sequences":
        let p = parts(data, 2)
        let csv = scratch + "/s.csv", fa = scratch + "/s.fa", txt = scratch + "/s.txt", voc = scratch + "/v.txt"
        write(p[0], csv)
        write(p[0], fa)
        write(p[0], txt)
        write(p[1], voc)
        _ = try? SequenceFiles.readSeries(path: csv)
        _ = try? SequenceFiles.readSeries(path: csv, columns: ["a", "b"])
        let vocab = try? TokenVocabulary.read(path: voc)
        for path in [fa, txt] {
            _ = try? SequenceFiles.tokenLengths(path: path, vocab: nil)
            _ = try? SequenceFiles.tokenLengths(path: path, vocab: vocab)
            for entry in [path, path + "#1", path + "#0@2+3", path + "@1+1"] {
                _ = try? SequenceFiles.readEntry(entry, vocab: vocab)
            }
            var counts: [String: Int] = [:]
            try? SequenceFiles.tokenCounts(path: path, into: &counts)
        }
        let first = String(decoding: p[0].prefix { $0 != 0x0A }, as: UTF8.self)
        let (_, record, window) = SequenceFiles.splitRecord(first)
        if let record { precondition(record >= 0) }
        if let window { precondition(window.lowerBound >= 0 && !window.isEmpty) }
    default:
        break
    }
    return 0
}
