import Foundation
import W2VBert

/// The parameters of two checkpoints (or run folders: their newest) compared tensor by tensor, relative to
/// each tensor's scale: max|a − b| / max(max|b|, 1e-3). B is the reference.
public struct CheckpointComparison {
    public let a: String, b: String
    /// Tensor names both hold.
    public let shared: Set<String>
    /// Tensors only in A, only in B.
    public let onlyInA: Int, onlyInB: Int
    /// True when every shared tensor is bit-identical.
    public private(set) var identical = true
    /// The largest relative difference and the tensor it is in.
    public private(set) var worst = 0.0
    public private(set) var worstName = ""

    /// Compares A with B. Without `common` the two must be checkpoints of the same model (the same
    /// architecture fields and tensor names); with it only the tensors both hold are compared.
    public init(_ pathA: String, _ pathB: String, common: Bool) throws {
        let folderA = try CheckpointFolder(pathA), folderB = try CheckpointFolder(pathB)
        a = folderA.directory
        b = folderB.directory
        let fa = try folderA.modelFile(), fb = try folderB.modelFile()
        shared = Set(fa.entries.keys).intersection(fb.entries.keys)
        onlyInA = fa.entries.count - shared.count
        onlyInB = fb.entries.count - shared.count
        if !common {
            if let diff = architectureDifference(expected: folderB.config.yaml, found: folderA.config.yaml) {
                let field = diff.replacingOccurrences(of: "in this run", with: "in \(b)")
                throw CheckpointFolderError(
                    "\(a)/trainer.json: config field \(field): the checkpoints are of different models")
            }
            guard onlyInA == 0 && onlyInB == 0 else {
                throw CheckpointFolderError(
                    "\(a), \(b): the checkpoints hold different tensors "
                        + "(HINT: --common compares the \(shared.count) they share)")
            }
        }
        for name in shared.sorted() {
            let x = try fa.array(name), y = try fb.array(name)
            guard x.count == y.count else { throw CheckpointFolderError("tensor '\(name)' differs in size") }
            if x != y { identical = false }
            let scale = max(Double(y.map { abs($0) }.max() ?? 0), 1e-3)
            let d = zip(x, y).map { Double(abs($0 - $1)) }.max() ?? 0
            if d / scale > worst {
                worst = d / scale
                worstName = name
            }
        }
    }

    /// "bit-identical" or "max relative difference X in 'NAME'".
    public var verdict: String {
        identical ? "bit-identical" : "max relative difference \(worst) in '\(worstName)'"
    }
}
