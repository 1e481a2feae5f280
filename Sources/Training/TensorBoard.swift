import Foundation
import CProcess

/// TensorBoard event files (scalars only), written by hand:
/// - TFRecord framing: uint64 length, uint32 masked CRC-32C of the length bytes, the record, uint32
///   masked CRC-32C of the record; mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8.
/// - Each record is a serialized `tensorflow.Event` protobuf: wall_time (field 1, double), step (2, int64),
///   file_version (3, string, first record "brain.Event:2") or summary (5, message) holding
///   `Summary.Value`s (field 1) with tag (1, string) and simple_value (2, float).
/// File name `events.out.tfevents.<seconds>.<host>`, as `tensorboard --logdir` expects.
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle

    public init(directory: String, host: String = ProcessInfo.processInfo.hostName) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let now = Date().timeIntervalSince1970
        path = "\(directory)/events.out.tfevents.\(Int(now)).\(host).\(getpid())"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw RunFileError(path, "cannot open the TensorBoard event file for writing")
        }
        handle = h
        var event = Proto()
        event.double(1, now)
        event.string(3, "brain.Event:2")
        writeRecord(event.bytes)
    }

    /// Appends scalars for one step.
    public func add(step: Int, scalars: [(String, Double)]) {
        var summary = Proto()
        for (tag, v) in scalars where v.isFinite {
            var value = Proto()
            value.string(1, tag)
            value.float(2, Float(v))
            summary.message(1, value)
        }
        var event = Proto()
        event.double(1, Date().timeIntervalSince1970)
        event.varintField(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary)
        writeRecord(event.bytes)
    }

    public func flush() { try? handle.synchronize() }
    deinit { try? handle.close() }

    private func writeRecord(_ data: [UInt8]) {
        var len = UInt64(data.count).littleEndian
        var out = [UInt8]()
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        var lcrc = TensorBoardWriter.maskedCRC(out).littleEndian
        withUnsafeBytes(of: &lcrc) { out.append(contentsOf: $0) }
        out.append(contentsOf: data)
        var dcrc = TensorBoardWriter.maskedCRC(data).littleEndian
        withUnsafeBytes(of: &dcrc) { out.append(contentsOf: $0) }
        writeOrWarn(handle, Data(out), path: path)
    }

    public static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let c = bytes.withUnsafeBytes { w2v_crc32c($0.baseAddress, $0.count) }
        return ((c >> 15) | (c << 17)) &+ 0xa282_ead8
    }
}

/// Minimal protobuf encoder (wire types 0, 1, 2, 5).
struct Proto {
    var bytes: [UInt8] = []
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wire: Int) { varint(UInt64(field << 3 | wire)) }
    mutating func varintField(_ field: Int, _ v: UInt64) {
        key(field, 0)
        varint(v)
    }
    mutating func double(_ field: Int, _ v: Double) {
        key(field, 1)
        var b = v.bitPattern.littleEndian
        withUnsafeBytes(of: &b) { bytes.append(contentsOf: $0) }
    }
    mutating func float(_ field: Int, _ v: Float) {
        key(field, 5)
        var b = v.bitPattern.littleEndian
        withUnsafeBytes(of: &b) { bytes.append(contentsOf: $0) }
    }
    mutating func string(_ field: Int, _ s: String) {
        key(field, 2)
        let u = Array(s.utf8)
        varint(UInt64(u.count))
        bytes.append(contentsOf: u)
    }
    mutating func message(_ field: Int, _ m: Proto) {
        key(field, 2)
        varint(UInt64(m.bytes.count))
        bytes.append(contentsOf: m.bytes)
    }
}

/// Reads back the scalars of an event file, verifying both CRCs of every record (used by tests and
/// `inspect`): [(step, tag, value)].
public func readTensorBoardScalars(path: String) throws -> [(step: Int, tag: String, value: Float)] {
    guard let data = FileManager.default.contents(atPath: path) else { throw RunFileError(path, "cannot read") }
    let b = [UInt8](data)
    var pos = 0
    var out: [(Int, String, Float)] = []
    func u32(_ p: Int) -> UInt32 {
        UInt32(b[p]) | UInt32(b[p + 1]) << 8 | UInt32(b[p + 2]) << 16 | UInt32(b[p + 3]) << 24
    }
    while pos < b.count {
        guard pos + 12 <= b.count else { throw RunFileError(path, "truncated record header at byte \(pos)") }
        var len = 0
        for i in 0..<8 { len |= Int(b[pos + i]) << (8 * i) }
        guard TensorBoardWriter.maskedCRC(Array(b[pos..<(pos + 8)])) == u32(pos + 8) else {
            throw RunFileError(path, "bad length CRC at byte \(pos)")
        }
        let start = pos + 12
        guard start + len + 4 <= b.count else { throw RunFileError(path, "truncated record at byte \(pos)") }
        let rec = Array(b[start..<(start + len)])
        guard TensorBoardWriter.maskedCRC(rec) == u32(start + len) else {
            throw RunFileError(path, "bad data CRC at byte \(pos)")
        }
        pos = start + len + 4
        // Decode Event.
        var step = 0
        var values: [(String, Float)] = []
        var r = ProtoReader(bytes: rec)
        while let (field, wire) = r.key() {
            switch (field, wire) {
            case (2, 0): step = Int(Int64(bitPattern: r.varint()))
            case (5, 2):
                var s = ProtoReader(bytes: r.lengthDelimited())
                while let (f2, w2) = s.key() {
                    if f2 == 1 && w2 == 2 {
                        var v = ProtoReader(bytes: s.lengthDelimited())
                        var tag = "", val: Float = .nan
                        while let (f3, w3) = v.key() {
                            if f3 == 1 && w3 == 2 {
                                tag = String(decoding: v.lengthDelimited(), as: UTF8.self)
                            } else if f3 == 2 && w3 == 5 {
                                val = Float(bitPattern: v.fixed32())
                            } else {
                                v.skip(w3)
                            }
                        }
                        values.append((tag, val))
                    } else {
                        s.skip(w2)
                    }
                }
            default: r.skip(wire)
            }
        }
        for (t, v) in values { out.append((step, t, v)) }
    }
    return out
}

struct ProtoReader {
    let bytes: [UInt8]
    var pos = 0
    init(bytes: [UInt8]) { self.bytes = bytes }
    mutating func varint() -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while pos < bytes.count {
            let c = bytes[pos]
            pos += 1
            v |= UInt64(c & 0x7f) << shift
            if c < 0x80 { break }
            shift += 7
        }
        return v
    }
    mutating func key() -> (Int, Int)? {
        if pos >= bytes.count { return nil }
        let k = varint()
        return (Int(k >> 3), Int(k & 7))
    }
    mutating func lengthDelimited() -> [UInt8] {
        let n = Int(varint())
        defer { pos += n }
        return Array(bytes[pos..<min(bytes.count, pos + n)])
    }
    mutating func fixed32() -> UInt32 {
        defer { pos += 4 }
        let b = (UInt32(bytes[pos]), UInt32(bytes[pos + 1]), UInt32(bytes[pos + 2]), UInt32(bytes[pos + 3]))
        return b.0 | b.1 << 8 | b.2 << 16 | b.3 << 24
    }
    mutating func skip(_ wire: Int) {
        switch wire {
        case 0: _ = varint()
        case 1: pos += 8
        case 2: _ = lengthDelimited()
        case 5: pos += 4
        default: pos = bytes.count
        }
    }
}

/// Appends to the TensorBoard event file; a failed write (a full disk) is reported once on stderr instead
/// of crashing (FileHandle.write(Data) traps on errors). Losing TensorBoard records does not stop
/// training; metrics.jsonl and checkpoint write failures do (status 1).
func writeOrWarn(_ handle: FileHandle, _ data: Data, path: String) {
    do {
        try handle.write(contentsOf: data)
    } catch {
        warnOnce("\(path): write failed (\(error.localizedDescription)); later records may be missing")
    }
}

nonisolated(unsafe) private var warned = Set<String>()
private let warnedLock = NSLock()

/// Prints "w2vbert: warning: MESSAGE" on stderr the first time MESSAGE is seen in this process.
func warnOnce(_ message: String) {
    warnedLock.lock()
    defer { warnedLock.unlock() }
    if warned.insert(message).inserted { FileHandle.standardError.write(Data("w2vbert: warning: \(message)\n".utf8)) }
}
