import ArgumentParser
import Foundation
import Tensor
import Audio
import W2VBert
import Training

/// The resolved config a run folder or checkpoint folder was trained with (trainer.json, else config.yaml).
func runConfig(_ dir: String, overrides: [String]) throws -> (Config, String) {
    let m = CheckpointManager(runDirectory: dir, keepLast: 1)
    var checkpoint = dir
    if FileManager.default.fileExists(atPath: dir + "/trainer.json") == false {
        guard let newest = m.latestName.map({ m.root + "/" + $0 }) ?? m.list().first?.directory else {
            throw RuntimeError("\(dir): neither a checkpoint folder nor a run folder with checkpoints")
        }
        checkpoint = newest
    }
    let state: TrainerState
    do { state = try TrainerState.read(path: checkpoint + "/trainer.json") } catch { throw RuntimeError("\(error)") }
    // A config that does not load is a damaged file (1); one that loads but not with the --set values is a bad
    // command line (2).
    do { _ = try Config.load(yaml: [state.config], overrides: []) } catch { throw RuntimeError("\(checkpoint)/trainer.json: \(error)") }
    do { return (try Config.load(yaml: [state.config], overrides: overrides), checkpoint) }
    catch { throw UsageError("\(error)") }
}

/// The model tensors of a checkpoint folder (or an `import-hf` folder, which has no optimizer file), validated
/// completely against the layout of `config`: offsets, finite values (SafeTensors.open), every name and shape,
/// no unexpected tensor. Errors (status 1) name the file and the tensor.
func validatedCheckpoint(_ dir: String, config: Config) throws -> SafeTensors.File {
    let path = dir + "/model.safetensors"
    do {
        let file = try SafeTensors.open(path: path)
        let layout = ParameterLayout(config: config)
        for e in layout.entries {
            guard let got = file.entries[e.name] else { throw RuntimeError("\(path): missing tensor '\(e.name)'") }
            guard got.shape == e.shape else {
                throw RuntimeError("\(path): tensor '\(e.name)' has shape \(got.shape), the model expects \(e.shape) (HINT: trainer.json describes another model)")
            }
        }
        let names = Set(layout.entries.map { $0.name })
        if let extra = file.entries.keys.sorted().first(where: { !names.contains($0) }) {
            throw RuntimeError("\(path): unexpected tensor '\(extra)' (HINT: trainer.json describes another model)")
        }
        return file
    } catch let e as RuntimeError { throw e } catch { throw RuntimeError("\(error)") }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Evaluate a run's newest checkpoint on a validation manifest (no Gumbel noise, fixed masks); works under mpirun.")
    @Option(help: "Run folder holding checkpoints/.") var runDir: String
    @Option(help: "Validation manifest.") var valid: String
    @Option(name: .customLong("set"), help: "Override one key, section.key=value (repeatable).") var overrides: [String] = []

    func run() throws {
        let (config, _) = try runConfig(runDir, overrides: overrides)
        guard FileManager.default.fileExists(atPath: valid) else { throw RuntimeError("\(valid): no such manifest") }
        var o = TrainOptions(trainManifest: valid, validManifest: valid, runDirectory: runDir)
        o.requireCheckpoint = true
        try runDistributed(compute: config.compute) { comm in try Trainer(config: config, options: o, comm: comm).evaluate() }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Summarise a run or checkpoint folder: checkpoints (validated), trainer state, parameters, last metrics.")
    @Argument(help: "Run folder or checkpoint folder.") var dir: String
    @Flag(help: "List every tensor with its shape and RMS.") var tensors = false

    func run() throws {
        let isCheckpoint = FileManager.default.fileExists(atPath: dir + "/trainer.json")
        let runDir = isCheckpoint ? ((dir as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent : dir
        let (config, ckpt) = try runConfig(dir, overrides: [])
        let layout = ParameterLayout(config: config)
        let ct = CheckpointTensors(layout: layout, config: config)
        let m = CheckpointManager(runDirectory: runDir, keepLast: 1)
        print("run: \(runDir)")
        print("model: \(config.model.dim)-d, \(config.model.contrastiveBlocks)+\(config.model.mlmBlocks) blocks, \(config.quantizer.groups)×\(config.quantizer.entries) codes, \(layout.parameterCount) parameters")
        if config.adapter.kind != .none {
            let n = layout.adapterParameterCount
            print(String(format: "adapters: %@ rank %d α %g on %@: %d parameters (%.2f %%), train.trainable %@", config.adapter.kind.rawValue,
                         config.adapter.rank, config.adapter.alpha, config.adapter.targets.map(\.rawValue).joined(separator: ","),
                         n, 100 * Double(n) / Double(layout.parameterCount), config.train.trainable.rawValue))
        }
        print("checkpoints (newest first; latest = \(m.latestName ?? "none"), best = \(m.bestRecord().map { "\($0.directory) valid loss \(String(format: "%.4f", $0.validLoss))" } ?? "none")):")
        m.expectedConfigYAML = config.yaml
        var corrupt: [String] = []
        for c in m.list() {
            let status: String
            do { _ = try m.validate(directory: c.directory, tensors: ct); status = "ok" } catch {
                status = "CORRUPT: \(error)"; corrupt.append((c.directory as NSString).lastPathComponent)
            }
            print("  \((c.directory as NSString).lastPathComponent)  \(status)")
        }
        defer { if !corrupt.isEmpty { FileHandle.standardError.write(Data("w2vbert: error: \(runDir): unusable checkpoint(s) \(corrupt.joined(separator: ", ")) (see above)\n".utf8)) } }
        if let s = try? TrainerState.read(path: ckpt + "/trainer.json") {
            print("state of \((ckpt as NSString).lastPathComponent): step \(s.step), optimizer_step \(s.optimizerStep), epoch \(s.epoch), micro_batch \(s.microBatch), world_size \(s.worldSize), update_freq \(s.updateFreq), tau \(s.tau), lr \(s.lr)" + (s.validLoss.map { ", valid_loss \($0)" } ?? ""))
        }
        if tensors, let f = try? SafeTensors.open(path: ckpt + "/model.safetensors") {
            for e in layout.entries {
                let a = (try? f.array(e.name)) ?? []
                let rms = a.isEmpty ? .nan : (a.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(a.count)).squareRoot()
                print(String(format: "  %-55@ %-16@ rms %.4g", e.name as NSString, "\(e.shape)" as NSString, rms))
            }
        }
        if let text = try? String(contentsOfFile: runDir + "/metrics.jsonl", encoding: .utf8) {
            let lines = text.split(separator: "\n")
            if let t = lines.last(where: { $0.contains("\"kind\":\"train\"") }) { print("last train record: \(t)") }
            if let v = lines.last(where: { $0.contains("\"kind\":\"valid\"") }) { print("last valid record: \(v)") }
        }
        if !corrupt.isEmpty { throw ExitCode(1) }   // after the summary; the message is printed by the defer above
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare the parameters of two checkpoints (or run folders: their newest): max relative difference per tensor.",
        discussion: "Relative to each tensor's scale: max|a − b| / max(max|b|, 1e-3). Exits 1 when it exceeds --rtol.")
    @Argument(help: "Checkpoint or run folder A.") var a: String
    @Argument(help: "Checkpoint or run folder B (the reference).") var b: String
    @Option(help: "Tolerance.") var rtol = 1e-5
    @Flag(help: "Compare only the tensors both hold (e.g. a LoRA run's base tensors against the checkpoint it started from).")
    var common = false

    func run() throws {
        let (configA, ca) = try runConfig(a, overrides: []), (configB, cb) = try runConfig(b, overrides: [])
        let fa = try validatedCheckpoint(ca, config: configA), fb = try validatedCheckpoint(cb, config: configB)
        let shared = Set(fa.entries.keys).intersection(fb.entries.keys)
        if !common {
            if let diff = architectureDifference(expected: configB.yaml, found: configA.yaml) {
                throw RuntimeError("\(ca)/trainer.json: config field \(diff.replacingOccurrences(of: "in this run", with: "in \(cb)")): the checkpoints are of different models")
            }
            guard Set(fa.entries.keys) == Set(fb.entries.keys) else {
                throw RuntimeError("\(ca), \(cb): the checkpoints hold different tensors (HINT: --common compares the \(shared.count) they share)")
            }
        } else {
            print("compare: \(shared.count) common tensors; only in A: \(fa.entries.count - shared.count), only in B: \(fb.entries.count - shared.count)")
        }
        var worst = 0.0, worstName = "", identical = true
        for name in shared.sorted() {
            let x = try fa.array(name), y = try fb.array(name)
            guard x.count == y.count else { throw RuntimeError("tensor '\(name)' differs in size") }
            if x != y { identical = false }
            let scale = max(Double(y.map { abs($0) }.max() ?? 0), 1e-3)
            let d = zip(x, y).map { Double(abs($0 - $1)) }.max() ?? 0
            if d / scale > worst { worst = d / scale; worstName = name }
        }
        print("compare: \(ca) vs \(cb): " + (identical ? "bit-identical" : "max relative difference \(worst) in '\(worstName)'"))
        if worst > rtol { throw ExitCode(1) }
    }
}
