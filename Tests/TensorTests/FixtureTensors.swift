import Foundation

/// A minimal safetensors reader for the committed oracle fixtures (F32, F64, I32 → Double arrays): an 8-byte
/// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the raw data.
struct FixtureTensors {
    struct Problem: Error, CustomStringConvertible {
        let description: String
    }
    private var tensors: [String: (shape: [Int], values: [Double])] = [:]

    init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), data.count >= 8 else {
            throw Problem(description: "\(path): missing or shorter than a safetensors header")
        }
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        guard n > 0, 8 + n <= data.count,
            let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as? [String: Any]
        else { throw Problem(description: "\(path): unreadable safetensors header") }
        for (name, value) in header where name != "__metadata__" {
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                let shape = (info["shape"] as? [NSNumber])?.map(\.intValue),
                let offsets = (info["data_offsets"] as? [NSNumber])?.map(\.intValue), offsets.count == 2,
                8 + n + offsets[1] <= data.count
            else { throw Problem(description: "\(path): tensor \(name) has a malformed entry") }
            let bytes = data.subdata(in: (8 + n + offsets[0])..<(8 + n + offsets[1]))
            let values: [Double]? = bytes.withUnsafeBytes { raw in
                switch dtype {
                case "F32": return raw.bindMemory(to: Float.self).map(Double.init)
                case "F64": return Array(raw.bindMemory(to: Double.self))
                case "I32": return raw.bindMemory(to: Int32.self).map(Double.init)
                default: return nil
                }
            }
            guard let values, values.count == shape.reduce(1, *) else {
                let what = "tensor \(name) (\(dtype), shape \(shape))"
                throw Problem(description: "\(path): \(what) is not F32/F64/I32 or has the wrong size")
            }
            tensors[name] = (shape, values)
        }
    }

    func shape(_ name: String) throws -> [Int] { try tensor(name).shape }
    func doubles(_ name: String) throws -> [Double] { try tensor(name).values }
    func ints(_ name: String) throws -> [Int] { try tensor(name).values.map { Int($0) } }

    private func tensor(_ name: String) throws -> (shape: [Int], values: [Double]) {
        guard let t = tensors[name] else { throw Problem(description: "fixture has no tensor \(name)") }
        return t
    }
}
