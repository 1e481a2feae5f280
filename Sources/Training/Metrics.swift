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
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { throw SafeTensorsError(path: path, problem: "cannot open for appending") }
        handle = h
        handle.seekToEndOfFile()
    }
    deinit { try? handle.close() }

    public func write(_ record: [String: Any]) throws {
        var r = record
        r["time"] = Date().timeIntervalSince1970
        // Non-finite numbers are not JSON: write them as strings so the line still parses.
        for (k, v) in r { if let d = v as? Double, !d.isFinite { r[k] = "\(d)" } }
        guard JSONSerialization.isValidJSONObject(r) else {
            throw SafeTensorsError(path: path, problem: "a \(r["kind"] ?? "metrics") record cannot be written as JSON: \(r)")
        }
        let data = try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys])
        do { try handle.write(contentsOf: data + Data([0x0a])) } catch {
            throw SafeTensorsError(path: path, problem: "cannot append a record: \(error)")
        }
    }
}

/// Appends to the TensorBoard event file; a failed write (a full disk) is reported once on stderr instead
/// of crashing (FileHandle.write(Data) traps on errors). Losing TensorBoard records does not stop
/// training; metrics.jsonl and checkpoint write failures do (status 1). Issue 11.
func writeOrWarn(_ handle: FileHandle, _ data: Data, path: String) {
    do { try handle.write(contentsOf: data) } catch { warnOnce("\(path): write failed (\(error.localizedDescription)); later records may be missing") }
}

nonisolated(unsafe) private var warned = Set<String>()
private let warnedLock = NSLock()
func warnOnce(_ message: String) {
    warnedLock.lock(); defer { warnedLock.unlock() }
    if warned.insert(message).inserted { FileHandle.standardError.write(Data("w2vbert: warning: \(message)\n".utf8)) }
}
