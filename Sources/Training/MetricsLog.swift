import Foundation

/// `RUN/metrics.jsonl`: one JSON object per line — a record per log step (`"kind": "train"`), per
/// validation (`"kind": "valid"`) and per event (`"kind": "event"`: resume, checkpoint, skipped step,
/// revived codes, stop signal, divergence). Appended and flushed line by line, so a crash loses nothing
/// already logged.
public final class MetricsLog {
    public let path: String
    private let handle: FileHandle

    public init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw RunFileError(path, "cannot open for appending") }
        handle = h
        handle.seekToEndOfFile()
    }
    deinit { try? handle.close() }

    public func write(_ record: [String: Any]) throws {
        var r = record
        r["time"] = Date().timeIntervalSince1970
        // Non-finite numbers are not JSON: write them as strings so the line still parses.
        for (k, v) in r {
            if let d = v as? Double, !d.isFinite { r[k] = "\(d)" }
        }
        guard JSONSerialization.isValidJSONObject(r) else {
            throw RunFileError(path, "a \(r["kind"] ?? "metrics") record cannot be written as JSON: \(r)")
        }
        let data = try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys])
        do {
            try handle.write(contentsOf: data + Data([0x0a]))
        } catch {
            throw RunFileError(path, "cannot append a record: \(error)")
        }
    }
}

/// A file of the run folder (metrics.jsonl, the TensorBoard event file) that cannot be opened, read or
/// written: the path and the problem.
public struct RunFileError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public init(_ path: String, _ problem: String) {
        self.path = path
        self.problem = problem
    }
    public var description: String { "\(path): \(problem)" }
}
