import Foundation
import Tensor
import W2VBert

/// The compute settings of this process from the config's compute.* keys (`Compute(_:threads:)`, which
/// resolves the threads and sizes the pool); `announce` prints the start-up line on stderr (rank 0), and the
/// warning when bf16 was asked for on a CPU without native bf16 (the run continues in fp32).
func startCompute(_ c: ComputeConfig, threads override: Int? = nil, announce: Bool) -> Compute {
    let compute = Compute(c, threads: override)
    if announce {
        if let auto = c.precision.autoDescription {
            FileHandle.standardError.write(Data("w2vbert: compute: \(auto)\n".utf8))
        }
        FileHandle.standardError.write(Data("w2vbert: \(compute.description)\n".utf8))
        if let warning = compute.warning { FileHandle.standardError.write(Data("w2vbert: warning: \(warning)\n".utf8)) }
    }
    return compute
}
