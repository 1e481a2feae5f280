// NumPy .npy files, version 1.0, little-endian float32 (write) and float32 / float64 / int16 (read).
// Format (numpy/lib/format.py): "\x93NUMPY" 0x01 0x00, uint16 LE header length, an ASCII Python dict
//   {'descr': '<f4', 'fortran_order': False, 'shape': (T, 80), }
// padded with spaces and a final '\n' so that the data starts at a multiple of 64, then the raw array
// in C order.

import Foundation

public struct NpyArray: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]
    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "npy: shape \(shape) does not match \(data.count) values")
        self.shape = shape
        self.data = data
    }
}

public enum Npy {
    public static func encode(_ a: NpyArray) -> Data {
        let dims = a.shape.map(String.init).joined(separator: ", ") + (a.shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var d = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let len = UInt16(header.utf8.count)
        d.append(contentsOf: [UInt8(len & 0xFF), UInt8(len >> 8)])
        d.append(contentsOf: Array(header.utf8))
        a.data.withUnsafeBufferPointer {
            d.append(
                UnsafeBufferPointer(
                    start: UnsafeRawPointer($0.baseAddress!)
                        .assumingMemoryBound(to: UInt8.self), count: $0.count * 4))
        }
        return d
    }

    public static func write(_ a: NpyArray, to path: String) throws(AudioError) {
        do { try encode(a).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw AudioError(.io, path: path, "\(error.localizedDescription)")
        }
    }

    public static func read(path: String) throws(AudioError) -> NpyArray {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw AudioError(.unreadable, path: path, "cannot read file")
        }
        return try decode(d, path: path)
    }

    public static func decode(_ d: Data, path: String = "<memory>") throws(AudioError) -> NpyArray {
        let bytes = [UInt8](d)
        func bad(_ m: String) -> AudioError { AudioError(.format, path: path, "not a .npy file we read: \(m)") }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw bad("bad magic")
        }
        let major = bytes[6]
        var headerLen: Int, start: Int
        if major == 1 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        } else if major == 2 || major == 3 {
            guard bytes.count >= 12 else { throw bad("short header") }
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        } else {
            throw bad("version \(major)")
        }
        guard bytes.count >= start + headerLen,
            let header = String(bytes: bytes[start..<(start + headerLen)], encoding: .ascii)
        else { throw bad("short header") }
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'"),
            let q2 = descrField[descrField.index(after: q1)...].firstIndex(of: "'")
        else { throw bad("no descr") }
        let descr = String(descrField[descrField.index(after: q1)..<q2])
        if let fo = field("fortran_order"), fo.hasPrefix("True") { throw bad("fortran_order") }
        guard let shapeField = field("shape"), let p1 = shapeField.firstIndex(of: "("),
            let p2 = shapeField.firstIndex(of: ")")
        else { throw bad("no shape") }
        guard p1 < p2 else { throw bad("no shape") }
        let dims = shapeField[shapeField.index(after: p1)..<p2].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let shape = dims.compactMap { Int($0) }
        guard shape.count == dims.count, shape.allSatisfy({ $0 >= 0 }) else {
            throw bad("shape (\(dims.joined(separator: ", "))) is not a tuple of sizes")
        }
        let body = start + headerLen
        let width: Int
        switch descr {
        case "<f4": width = 4
        case "<f8": width = 8
        case "<i2": width = 2
        default: throw bad("dtype \(descr)")
        }
        // Every size is checked against the bytes present before anything is allocated (no overflow).
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= bytes.count else { throw bad("data shorter than shape \(shape)") }
            count = p
        }
        guard bytes.count - body >= count * width else { throw bad("data shorter than shape \(shape)") }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + body
            for i in 0..<count {
                switch width {
                case 4:
                    out[i] = Float(
                        bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                case 8:
                    out[i] = Float(
                        Double(
                            bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                default: out[i] = Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                }
            }
        }
        return NpyArray(shape: shape, data: out)
    }
}
