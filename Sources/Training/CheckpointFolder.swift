import Foundation
import W2VBert

/// A checkpoint folder (`step-…`, or an `import-hf` folder) or a run folder (its newest checkpoint), as the
/// commands that read one back see it: the resolved config it was trained with and its validated model
/// tensors. Errors about the folder's files are `CheckpointFolderError` (they name the file); a `--set`
/// override that does not apply to the stored config is a `ConfigError` (a bad command line).
public struct CheckpointFolder {
    /// The checkpoint folder itself (for a run folder: its newest checkpoint).
    public let directory: String
    /// The stored config with the overrides applied.
    public let config: Config

    /// Resolves `path` (checkpoint or run folder) and loads its config from trainer.json.
    public init(_ path: String, overrides: [String] = []) throws {
        var checkpoint = path
        if !FileManager.default.fileExists(atPath: path + "/trainer.json") {
            let m = CheckpointManager(runDirectory: path, keepLast: 1)
            guard let newest = m.latestName.map({ m.root + "/" + $0 }) ?? m.list().first?.directory else {
                throw CheckpointFolderError("\(path): neither a checkpoint folder nor a run folder with checkpoints")
            }
            checkpoint = newest
        }
        let state: TrainerState
        do {
            state = try TrainerState.read(path: checkpoint + "/trainer.json")
        } catch {
            throw CheckpointFolderError("\(error)")
        }
        // A stored config that does not load is a damaged file; one that loads but not with the overrides is a
        // bad command line (the ConfigError goes to the caller).
        do {
            _ = try Config.load(yaml: [state.config], overrides: [])
        } catch {
            throw CheckpointFolderError("\(checkpoint)/trainer.json: \(error)")
        }
        directory = checkpoint
        config = try Config.load(yaml: [state.config], overrides: overrides)
    }

    /// Throws unless the checkpoint holds the pre-training model (model.head pretrain); `command` is the reader.
    public func requirePretraining(_ command: String) throws {
        guard config.model.head == .pretrain else {
            throw CheckpointFolderError(
                "\(directory)/trainer.json: a CTC fine-tuned model (model.head \(config.model.head.rawValue)); "
                    + "\(command) reads pre-training checkpoints (transcribe and evaluate read this one)")
        }
    }

    /// The run folder that holds this checkpoint (two levels up: RUN/checkpoints/step-…).
    public var runDirectory: String {
        ((directory as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
    }

    /// model.safetensors, validated completely against the layout of the config: offsets, finite values
    /// (SafeTensors.open), every name and shape, no unexpected tensor. Errors name the file and the tensor.
    public func modelFile() throws -> SafeTensors.File {
        let path = directory + "/model.safetensors"
        let file: SafeTensors.File
        do {
            file = try SafeTensors.open(path: path)
        } catch {
            throw CheckpointFolderError("\(error)")
        }
        let layout = ParameterLayout(config: config)
        let hint = "(HINT: trainer.json describes another model)"
        for e in layout.entries {
            guard let got = file.entries[e.name] else {
                throw CheckpointFolderError("\(path): missing tensor '\(e.name)'")
            }
            guard got.shape == e.shape else {
                throw CheckpointFolderError(
                    "\(path): tensor '\(e.name)' has shape \(got.shape), the model expects \(e.shape) \(hint)")
            }
        }
        let names = Set(layout.entries.map { $0.name })
        if let extra = file.entries.keys.sorted().first(where: { !names.contains($0) }) {
            throw CheckpointFolderError("\(path): unexpected tensor '\(extra)' \(hint)")
        }
        return file
    }

    /// Reads every model tensor of the layout into `params` (validated first, `modelFile()`).
    public func readParameters(_ layout: ParameterLayout, into params: UnsafeMutablePointer<Float>) throws {
        let file = try modelFile()
        for e in layout.entries {
            do {
                try file.read(e.name, shape: e.shape, into: params + e.offset)
            } catch {
                throw CheckpointFolderError("\(error)")
            }
        }
    }

    /// trainer.json of this checkpoint.
    public func trainerState() throws -> TrainerState {
        do {
            return try TrainerState.read(path: directory + "/trainer.json")
        } catch {
            throw CheckpointFolderError("\(error)")
        }
    }
}

/// A checkpoint or run folder that cannot be used: the message names the file and the problem.
public struct CheckpointFolderError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
