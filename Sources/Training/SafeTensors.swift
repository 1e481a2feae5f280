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
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }
}

public enum SafeTensors {
    /// Writes tensors (in the given order) to `path`; `data(i)` gives entry i's floats.
    public static func write(
        path: String, entries: [TensorEntry], metadata: [String: String] = [:],
        data: (Int) -> UnsafePointer<Float>
    ) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for e in entries {
            header[e.name] =
                ["dtype": "F32", "shape": e.shape, "data_offsets": [offset, offset + e.count * 4]] as [String: Any]
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
                let src = raw.baseAddress!.advanced(by: dataStart - bytes.startIndex + e.range.lowerBound)
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
    /// a shape matching its byte range, ranges in bounds, not overlapping, contiguous and covering the data
    /// exactly, every value finite. Every size and offset from the header is checked (overflow included)
    /// before it is used; nothing is allocated from a header field (the only allocation is the file itself,
    /// sized by the file system).
    public static func open(path: String) throws -> File {
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw SafeTensorsError(path: path, problem: "cannot read the file")
        }
        return try parse(bytes, path: path)
    }

    /// The largest header accepted (the header of a 1-billion-parameter model is a few hundred kB).
    public static let maxHeaderBytes = 100_000_000

    /// Parses and validates the bytes of a safetensors file (see `open`).
    public static func parse(_ bytes: Data, path: String) throws -> File {
        func fail(_ p: String) -> SafeTensorsError {
            SafeTensorsError(
                path: path, problem: p + " (HINT: the file is truncated, damaged or not a safetensors file)")
        }
        guard bytes.count >= 8 else { throw fail("shorter than the 8-byte header length") }
        let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(bytes.count - 8), n <= UInt64(maxHeaderBytes) else {
            throw fail(
                "header length \(n) exceeds the file size \(bytes.count) or the limit of \(maxHeaderBytes) bytes")
        }
        let start = bytes.startIndex
        let headerData = bytes.subdata(in: (start + 8)..<(start + 8 + Int(n)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        let dataStart = 8 + Int(n)
        let dataCount = bytes.count - dataStart
        var entries: [String: (shape: [Int], range: Range<Int>)] = [:]
        var metadata: [String: String] = [:]
        for (k, v) in header {
            if k == "__metadata__" {
                guard let m = v as? [String: String] else { throw fail("__metadata__ is not an object of strings") }
                metadata = m
                continue
            }
            guard let d = v as? [String: Any], let dtype = d["dtype"] as? String, let shape = exactInts(d["shape"]),
                let offs = exactInts(d["data_offsets"]), offs.count == 2
            else { throw fail("malformed entry '\(k)'") }
            guard dtype == "F32" else {
                throw SafeTensorsError(path: path, problem: "tensor '\(k)' has dtype \(dtype); only F32 is supported")
            }
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] <= dataCount else {
                throw fail("tensor '\(k)' lies outside the data (\(offs) of \(dataCount) bytes)")
            }
            var count = 1
            for dim in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: dim)
                guard dim >= 0, !overflow, p <= dataCount else {
                    throw fail("tensor '\(k)' has an impossible shape \(shape)")
                }
                count = p
            }
            guard count * 4 == offs[1] - offs[0] else {
                throw fail("tensor '\(k)' shape \(shape) does not match its \(offs[1] - offs[0]) bytes")
            }
            entries[k] = (shape, offs[0]..<offs[1])
        }
        let ordered = entries.map { (name: $0.key, range: $0.value.range) }
            .sorted {
                ($0.range.lowerBound, $0.range.upperBound, $0.name) < (
                    $1.range.lowerBound, $1.range.upperBound, $1.name
                )
            }
        var pos = 0, previous = "the start of the data"
        for e in ordered {
            guard e.range.lowerBound >= pos else {
                throw fail("tensor '\(e.name)' overlaps \(previous) at byte \(e.range.lowerBound)")
            }
            guard e.range.lowerBound == pos else {
                throw fail(
                    "tensor data is not contiguous: \(e.range.lowerBound - pos) bytes unaccounted for before tensor "
                        + "'\(e.name)'"
                )
            }
            pos = e.range.upperBound
            previous = "tensor '\(e.name)'"
        }
        guard pos == dataCount else { throw fail("data is \(dataCount) bytes but the tensors cover \(pos)") }
        try checkFinite(bytes, tensors: ordered, dataStart: dataStart, path: path)
        return File(path: path, bytes: bytes, dataStart: start + dataStart, entries: entries, metadata: metadata)
    }

    /// Values: a NaN or infinity in a checkpoint is damage (the trainer never saves one), refused by name.
    static func checkFinite(
        _ bytes: Data, tensors ordered: [(name: String, range: Range<Int>)], dataStart: Int,
        path: String
    ) throws {
        try bytes.withUnsafeBytes { raw in
            for e in ordered where !e.range.isEmpty {
                let base = raw.baseAddress!.advanced(by: dataStart + e.range.lowerBound)
                let count = e.range.count / 4
                for i in 0..<count {
                    let bits = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    if bits & 0x7f80_0000 == 0x7f80_0000 {
                        let x = Float(bitPattern: bits)
                        throw SafeTensorsError(
                            path: path,
                            problem:
                                "tensor '\(e.name)' holds \(x.isNaN ? "NaN" : x > 0 ? "+infinity" : "-infinity") at "
                                + "element \(i) (HINT: the file is damaged or was written by a diverged run)"
                        )
                    }
                }
            }
        }
    }

    /// An array of integers from JSON only when every element is an integral number below 9e15 (no 1.5, no 1e300).
    static func exactInts(_ v: Any?) -> [Int]? {
        guard let a = v as? [Any] else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for x in a {
            guard let n = x as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d.rounded() == d, abs(d) < 9.0e15, let i = Int(exactly: d) else { return nil }
            out.append(i)
        }
        return out
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
            if w <= 0 {
                ok = false
                break
            }
            off += w
        }
    }
    var err = errno
    // Delayed allocation: a full disk or an I/O error may surface only at fsync (or close).
    if ok && fsync(fd) != 0 {
        ok = false
        err = errno
    }
    if close(fd) != 0 && ok {
        ok = false
        err = errno
    }
    guard ok else {
        unlink(tmp)
        throw SafeTensorsError(path: path, problem: "write failed: \(String(cString: strerror(err)))")
    }
    guard rename(tmp, path) == 0 else {
        throw SafeTensorsError(path: path, problem: "rename failed: \(String(cString: strerror(errno)))")
    }
    fsyncDirectory((path as NSString).deletingLastPathComponent)
}

public func fsyncDirectory(_ dir: String) {
    let fd = Foundation.open(dir.isEmpty ? "." : dir, O_RDONLY)
    if fd >= 0 {
        fsync(fd)
        close(fd)
    }
}
