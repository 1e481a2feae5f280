import Foundation

/// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length n, n bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}
/// padded with spaces to a multiple of 8, then the raw little-endian tensor bytes. Only F32 here.
/// Readable by Python's `safetensors` (`safe_open(path, "np")`), so checkpoints map onto PyTorch by name.
public struct SafeTensorsError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

public struct TensorEntry: Sendable {
    public let name: String
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    public init(name: String, shape: [Int]) { self.name = name; self.shape = shape }
}

public enum SafeTensors {
    /// Writes tensors (in the given order) to `path`; `data(i)` gives entry i's floats.
    public static func write(path: String, entries: [TensorEntry], metadata: [String: String] = [:],
                             data: (Int) -> UnsafePointer<Float>) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": "F32", "shape": e.shape, "data_offsets": [offset, offset + e.count * 4]] as [String: Any]
            offset += e.count * 4
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(json)
        for (i, e) in entries.enumerated() {
            out.append(Data(bytes: data(i), count: e.count * 4))
        }
        try writeDurably(out, to: path)
    }

    /// A parsed file: entries in offset order, their byte ranges, and the metadata.
    public struct File {
        public let path: String
        public let bytes: Data
        public let dataStart: Int
        public let entries: [String: (shape: [Int], range: Range<Int>)]
        public let metadata: [String: String]

        /// Copies tensor `name` into dst after checking its shape.
        public func read(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<Float>) throws {
            guard let e = entries[name] else { throw SafeTensorsError(path: path, problem: "missing tensor '\(name)'") }
            guard e.shape == shape else {
                throw SafeTensorsError(path: path, problem: "tensor '\(name)' has shape \(e.shape), expected \(shape)")
            }
            bytes.withUnsafeBytes { raw in
                let src = raw.baseAddress!.advanced(by: dataStart + e.range.lowerBound)
                memcpy(dst, src, e.range.count)
            }
        }
        public func array(_ name: String) throws -> [Float] {
            guard let e = entries[name] else { throw SafeTensorsError(path: path, problem: "missing tensor '\(name)'") }
            var a = [Float](repeating: 0, count: e.range.count / 4)
            try a.withUnsafeMutableBufferPointer { try read(name, shape: e.shape, into: $0.baseAddress!) }
            return a
        }
    }

    /// Reads and validates a file: header length within the file, JSON well formed, every entry F32 with
    /// a shape matching its byte range, ranges in bounds, contiguous and covering the data exactly.
    public static func open(path: String) throws -> File {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw SafeTensorsError(path: path, problem: "cannot read the file")
        }
        func fail(_ p: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: p + " (HINT: the file is truncated or not a safetensors file)") }
        guard bytes.count >= 8 else { throw fail("shorter than the 8-byte header length") }
        let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(bytes.count - 8), n < 100_000_000 else { throw fail("header length \(n) exceeds the file size \(bytes.count)") }
        let headerData = bytes.subdata(in: 8..<(8 + Int(n)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + Int(n)
        let dataCount = bytes.count - dataStart
        var entries: [String: (shape: [Int], range: Range<Int>)] = [:]
        var metadata: [String: String] = [:]
        for (k, v) in header {
            if k == "__metadata__" { metadata = (v as? [String: String]) ?? [:]; continue }
            guard let d = v as? [String: Any], let dtype = d["dtype"] as? String, let shape = d["shape"] as? [Int],
                  let offs = d["data_offsets"] as? [Int], offs.count == 2 else { throw fail("malformed entry '\(k)'") }
            guard dtype == "F32" else { throw SafeTensorsError(path: path, problem: "tensor '\(k)' has dtype \(dtype); only F32 is supported") }
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] <= dataCount else { throw fail("tensor '\(k)' lies outside the data (\(offs) of \(dataCount) bytes)") }
            guard shape.reduce(1, *) * 4 == offs[1] - offs[0] else { throw fail("tensor '\(k)' shape \(shape) does not match its \(offs[1] - offs[0]) bytes") }
            entries[k] = (shape, offs[0]..<offs[1])
        }
        let ranges = entries.values.map { $0.range }.sorted { $0.lowerBound < $1.lowerBound }
        var pos = 0
        for r in ranges {
            guard r.lowerBound == pos else { throw fail("tensor data is not contiguous at byte \(pos)") }
            pos = r.upperBound
        }
        guard pos == dataCount else { throw fail("data is \(dataCount) bytes but the tensors cover \(pos)") }
        return File(path: path, bytes: bytes, dataStart: dataStart, entries: entries, metadata: metadata)
    }
}

/// Writes data to path via a temporary file in the same folder: write, fsync, rename, fsync the folder.
public func writeDurably(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
        throw SafeTensorsError(path: tmp, problem: "cannot create the file")
    }
    let fd = Foundation.open(tmp, O_WRONLY | O_TRUNC)
    guard fd >= 0 else { throw SafeTensorsError(path: tmp, problem: String(cString: strerror(errno))) }
    var ok = true
    data.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let w = Foundation.write(fd, raw.baseAddress!.advanced(by: off), raw.count - off)
            if w <= 0 { ok = false; break }
            off += w
        }
    }
    let err = errno
    fsync(fd)
    close(fd)
    guard ok else {
        unlink(tmp)
        throw SafeTensorsError(path: path, problem: "write failed: \(String(cString: strerror(err)))")
    }
    guard rename(tmp, path) == 0 else { throw SafeTensorsError(path: path, problem: "rename failed: \(String(cString: strerror(errno)))") }
    fsyncDirectory((path as NSString).deletingLastPathComponent)
}

public func fsyncDirectory(_ dir: String) {
    let fd = Foundation.open(dir.isEmpty ? "." : dir, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
}
