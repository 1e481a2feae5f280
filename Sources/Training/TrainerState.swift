// What a checkpoint holds besides tensors (`trainer.json`) and the best-checkpoint record (`best.json`),
// as typed, versioned Codable values. A file written by a newer format, or one that is not this format
// at all, is refused with a message naming the file and the field.

import Foundation

public struct TrainerStateError: Error, CustomStringConvertible {
    public let path: String, problem: String
    public var description: String { "\(path): \(problem)" }
}

/// trainer.json. `formatVersion` 2 (this one); files without it are version 1, which had the same fields.
public struct TrainerState: Codable, Sendable, Equatable {
    public static let formatVersion = 2
    public var formatVersion = TrainerState.formatVersion
    public var software = "w2vbert-swift 0.2"
    public var step = 0
    public var optimizerStep = 0
    public var epoch = 0
    public var microBatch = 0
    public var worldSize = 1
    public var updateFreq = 1
    public var seed: UInt64 = 0
    public var tau = 0.0
    public var lr = 0.0
    public var consecutiveSkips = 0
    public var codeWindow: [Double] = []
    /// The resolved config as YAML.
    public var config = ""
    public var validLoss: Double?
    /// adapter.speaker = table: the labels of the speaker table's rows (row N: unknown speakers).
    public var speakers: [String]?
    public init() {}

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", software = "version", step, optimizerStep = "optimizer_step", epoch
        case microBatch = "micro_batch", worldSize = "world_size", updateFreq = "update_freq", seed, tau, lr
        case consecutiveSkips = "consecutive_skips", codeWindow = "code_window", config, validLoss = "valid_loss",
            speakers
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decodeIfPresent(Int.self, forKey: .formatVersion) ?? 1
        guard formatVersion >= 1 else {
            throw DecodingError.dataCorruptedError(
                forKey: .formatVersion, in: c, debugDescription: "format_version \(formatVersion) is not valid")
        }
        guard formatVersion <= TrainerState.formatVersion else {
            throw DecodingError.dataCorruptedError(
                forKey: .formatVersion, in: c,
                debugDescription:
                    "written by a newer w2vbert-swift (format_version \(formatVersion); this one reads "
                        + "≤ \(TrainerState.formatVersion))"
            )
        }
        software = try c.decodeIfPresent(String.self, forKey: .software) ?? "unknown"
        step = try c.decode(Int.self, forKey: .step)
        optimizerStep = try c.decodeIfPresent(Int.self, forKey: .optimizerStep) ?? step
        epoch = try c.decodeIfPresent(Int.self, forKey: .epoch) ?? 0
        microBatch = try c.decodeIfPresent(Int.self, forKey: .microBatch) ?? 0
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        updateFreq = try c.decode(Int.self, forKey: .updateFreq)
        seed = try c.decode(UInt64.self, forKey: .seed)
        tau = try c.decodeIfPresent(Double.self, forKey: .tau) ?? 0
        lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? 0
        consecutiveSkips = try c.decodeIfPresent(Int.self, forKey: .consecutiveSkips) ?? 0
        codeWindow = try c.decodeIfPresent([Double].self, forKey: .codeWindow) ?? []
        config = try c.decode(String.self, forKey: .config)
        validLoss = try c.decodeIfPresent(Double.self, forKey: .validLoss)
        speakers = try c.decodeIfPresent([String].self, forKey: .speakers)
        guard step >= 0, optimizerStep >= 0, epoch >= 0, microBatch >= 0, worldSize >= 1, updateFreq >= 1,
            consecutiveSkips >= 0
        else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: [], debugDescription: "a negative step, cursor, world size or update_freq"))
        }
    }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        e.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try e.encode(self)
    }

    public static func decode(_ data: Data, path: String) throws -> TrainerState {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try d.decode(TrainerState.self, from: data) } catch {
            throw TrainerStateError(path: path, problem: describe(error))
        }
    }

    public static func read(path: String) throws -> TrainerState {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainerStateError(path: path, problem: "cannot read the file")
        }
        return try decode(data, path: path)
    }
}

/// best.json: the checkpoint with the lowest validation loss so far.
public struct BestCheckpoint: Codable, Sendable, Equatable {
    public var step: Int
    public var validLoss: Double
    public var directory: String
    enum CodingKeys: String, CodingKey { case step, validLoss = "valid_loss", directory }
    public init(step: Int, validLoss: Double, directory: String) {
        self.step = step
        self.validLoss = validLoss
        self.directory = directory
    }
}

/// A decoding error as one line naming the field.
func describe(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func path(_ p: [CodingKey]) -> String {
        p.isEmpty ? "" : "field '" + p.map { $0.stringValue }.joined(separator: ".") + "': "
    }
    switch e {
    case .keyNotFound(let k, let c): return "\(path(c.codingPath))missing field '\(k.stringValue)'"
    case .typeMismatch(_, let c): return "\(path(c.codingPath))wrong type (\(c.debugDescription))"
    case .valueNotFound(_, let c): return "\(path(c.codingPath))missing value"
    case .dataCorrupted(let c): return "\(path(c.codingPath))\(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}
