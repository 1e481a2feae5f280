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

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Hidden states of audio files from a checkpoint (whole utterance, no masking, no noise) as .npy.",
        discussion: "One input: OUT.npy holds [T, d]. Several: OUT.npy holds [N, T_max, d] zero-padded and OUT.lengths.npy the frame counts.")
    @Option(help: "Checkpoint folder (step-…) or run folder (its newest checkpoint).") var checkpoint: String
    @Argument(help: "Audio files (anything libsndfile reads; resampled to 16 kHz, downmixed).") var audio: [String]
    @Option(help: "Output .npy file.") var out: String
    @Option(help: "contrastive (after the last contrastive block), mlm (after the last MLM block) or speaker (hyper-lora's speaker vector per file: [files, adapter.speaker_dim]).") var layer = "mlm"
    @Option(name: .customLong("set"), help: "Override one key, e.g. compute.precision=bf16 (repeatable).") var overrides: [String] = []
    @Flag(help: "Run all inputs as one zero-padded batch (padding must not change the states of real frames).") var batch = false
    @Option(help: "Also write the model's input features (CMVN'd fbank, [N, T0_max, 80] zero-padded) here, with PATH.lengths.npy.")
    var saveFeatures: String?

    func validate() throws {
        guard layer == "mlm" || layer == "contrastive" || layer == "speaker" else {
            throw ValidationError("--layer must be contrastive, mlm or speaker, not '\(layer)'")
        }
        guard !audio.isEmpty else { throw ValidationError("give at least one audio file") }
    }

    func run() throws {
        let (config, dir) = try runConfig(checkpoint, overrides: overrides)
        startCompute(config.compute, announce: true)
        let (feats, t0s, padded) = try features(config)
        let maxT0 = t0s.max()!
        let model = W2VBertModel(config: config, maxBatch: batch ? feats.count : 1, maxFrames: maxT0)
        let file = try validatedCheckpoint(dir, config: config)
        for e in model.layout.entries {
            do { try file.read(e.name, shape: e.shape, into: model.params.ptr + e.offset) } catch { throw RuntimeError("\(error)") }
        }
        if layer == "speaker" { return try speakerVectors(model, feats, dir: dir) }
        let outputs = batch ? batchedStates(model, padded: padded, t0s: t0s) : feats.map { oneState(model, $0) }
        try write(outputs, d: config.model.dim)
        print("embed: \(audio.count) file(s), layer \(layer), d = \(config.model.dim) → \(out)")
    }

    /// CMVN'd fbank of every input, their T0, and all of them zero-padded to [N, T0_max, 80] (saved with --save-features).
    func features(_ config: Config) throws -> ([[Float]], [Int], [Float]) {
        var feats: [[Float]] = []
        let fbank = KaldiFbank()
        for path in audio {
            let samples: [Float]
            do { samples = try AudioDecoder.load(path: path) } catch { throw RuntimeError("\(error)") }
            var f = fbank.compute(samples)
            let t0 = f.count / Config.melBins
            guard config.encoderLength(t0: t0) >= 1 else { throw RuntimeError("\(path): too short (\(t0) fbank frames)") }
            applyCMVN(&f, frames: t0, bins: Config.melBins)
            feats.append(f)
        }
        let t0s = feats.map { $0.count / Config.melBins }, maxT0 = t0s.max()!
        var padded = [Float](repeating: 0, count: feats.count * maxT0 * Config.melBins)
        for (i, f) in feats.enumerated() { for j in 0..<f.count { padded[i * maxT0 * Config.melBins + j] = f[j] } }
        if let path = saveFeatures {
            let stem = path.hasSuffix(".npy") ? String(path.dropLast(4)) : path
            do {
                try Npy.write(NpyArray(shape: [feats.count, maxT0, Config.melBins], data: padded), to: path)
                try Npy.write(NpyArray(shape: [feats.count], data: t0s.map(Float.init)), to: stem + ".lengths.npy")
            } catch { throw RuntimeError("\(error)") }
        }
        return (feats, t0s, padded)
    }

    var embedLayer: W2VBertModel.EmbedLayer { layer == "mlm" ? .mlm : .contrastive }

    /// Issue 13: one speaker vector per file, [files, speaker_dim].
    func speakerVectors(_ model: W2VBertModel, _ feats: [[Float]], dir: String) throws {
        guard model.config.adapter.isHyper else { throw RuntimeError("\(dir): --layer speaker needs a checkpoint trained with adapter.kind = hyper-lora") }
        let sd = model.config.adapter.speakerDim
        var all: [Float] = []
        for f in feats {
            let len = [Int32(f.count / Config.melBins)]
            f.withUnsafeBufferPointer { fp in
                len.withUnsafeBufferPointer { lp in
                    let v = model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: 1, frames: Int(len[0]), layer: .speaker)
                    all += UnsafeBufferPointer(start: v, count: sd)
                }
            }
        }
        do { try Npy.write(NpyArray(shape: [feats.count, sd], data: all), to: out) } catch { throw RuntimeError("\(error)") }
        print("embed: \(audio.count) file(s), layer speaker, speaker_dim = \(sd) → \(out)")
    }

    /// One padded batch [N, T_max, d]; each utterance keeps its encoderLength(T0) rows.
    func batchedStates(_ model: W2VBertModel, padded: [Float], t0s: [Int]) -> [[Float]] {
        let c = model.config, d = c.model.dim, maxT0 = t0s.max()!, tMax = c.encoderLength(t0: maxT0)
        let lens = t0s.map { Int32($0) }
        let all: [Float] = padded.withUnsafeBufferPointer { fp in
            lens.withUnsafeBufferPointer { lp in
                let h = model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: t0s.count, frames: maxT0, layer: embedLayer)
                return Array(UnsafeBufferPointer(start: h, count: t0s.count * tMax * d))
            }
        }
        return t0s.enumerated().map { i, t0 in Array(all[(i * tMax * d)..<(i * tMax * d + c.encoderLength(t0: t0) * d)]) }
    }

    /// One utterance on its own: [T, d].
    func oneState(_ model: W2VBertModel, _ f: [Float]) -> [Float] {
        let c = model.config, t0 = f.count / Config.melBins, t = c.encoderLength(t0: t0)
        let len = [Int32(t0)]
        return f.withUnsafeBufferPointer { fp in
            len.withUnsafeBufferPointer { lp in
                let h = model.embed(features: fp.baseAddress!, lengths: lp.baseAddress!, batch: 1, frames: t0, layer: embedLayer)
                return Array(UnsafeBufferPointer(start: h, count: t * c.model.dim))
            }
        }
    }

    /// OUT.npy: [T, d] for one input; [N, T_max, d] zero-padded and OUT.lengths.npy for several.
    func write(_ outputs: [[Float]], d: Int) throws {
        do {
            if outputs.count == 1 {
                try Npy.write(NpyArray(shape: [outputs[0].count / d, d], data: outputs[0]), to: out)
            } else {
                let tMax = outputs.map { $0.count / d }.max()!
                var all = [Float](repeating: 0, count: outputs.count * tMax * d)
                for (i, o) in outputs.enumerated() { for j in 0..<o.count { all[i * tMax * d + j] = o[j] } }
                try Npy.write(NpyArray(shape: [outputs.count, tMax, d], data: all), to: out)
                let stem = out.hasSuffix(".npy") ? String(out.dropLast(4)) : out
                try Npy.write(NpyArray(shape: [outputs.count], data: outputs.map { Float($0.count / d) }), to: stem + ".lengths.npy")
            }
        } catch { throw RuntimeError("\(error)") }
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
