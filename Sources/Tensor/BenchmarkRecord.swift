import Foundation

/// One measurement of a benchmark, printed as one JSON line: fields in the order they were added;
/// numbers with four significant digits, non-finite numbers as strings (JSON has no NaN).
public struct BenchmarkRecord: CustomStringConvertible {
    public private(set) var fields: [(key: String, json: String)] = []

    public init() {}

    public init(_ fields: [(String, Any)]) {
        for (k, v) in fields { add(k, v) }
    }

    /// Adds a field: a String, an integer or a floating-point number (anything else as its description).
    public mutating func add(_ key: String, _ value: Any) {
        switch value {
        case let s as String:
            fields.append((key, "\"\(s)\""))
        case let d as Double:
            fields.append((key, d.isFinite ? String(format: "%.4g", d) : "\"\(d)\""))
        case let f as Float:
            add(key, Double(f))
        default:
            fields.append((key, "\(value)"))
        }
    }

    /// The field's JSON text, nil when absent.
    public subscript(key: String) -> String? { fields.first { $0.key == key }?.json }

    /// `{"key": value, ...}` on one line.
    public var description: String {
        "{" + fields.map { "\"\($0.key)\": \($0.json)" }.joined(separator: ", ") + "}"
    }
}
