// swift-tools-version: 6.0
// w2vbert-swift: W2V-BERT pre-training on CPU clusters, data-parallel over MPI.
import PackageDescription
import Foundation

// The CPU the Swift kernels are compiled for. x86-64: Haswell (AVX2 + FMA, every x86 cluster node since
// 2013) unless W2VBERT_TARGET_CPU names another (`native` for the build machine, e.g. AVX-512 on Zen 4/5
// or Skylake-X and later; a binary built that way runs only on CPUs with the same features). Other
// architectures: the compiler's default unless W2VBERT_TARGET_CPU is set.
#if arch(x86_64)
    let targetCPU: String? = ProcessInfo.processInfo.environment["W2VBERT_TARGET_CPU"] ?? "haswell"
#else
    let targetCPU: String? = ProcessInfo.processInfo.environment["W2VBERT_TARGET_CPU"]
#endif

// Hot kernels: no bounds checks in release builds.
let fast: [SwiftSetting] = [
    .unsafeFlags(
        ["-Ounchecked", "-wmo"] + (targetCPU.map { ["-target-cpu", $0] } ?? []),
        .when(configuration: .release))
]

let package = Package(
    name: "w2vbert-swift",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "w2vbert", targets: ["w2vbert"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1")
    ],
    targets: [
        // MARK: System libraries (module maps only)
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSndFile", pkgConfig: "sndfile", providers: [.apt(["libsndfile1-dev"])]),
        .systemLibrary(name: "CSampleRate", pkgConfig: "samplerate", providers: [.apt(["libsamplerate0-dev"])]),
        .systemLibrary(name: "CMPISys", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),

        // MARK: The C shim around MPI (the only code that includes mpi.h)
        .target(name: "CMPI", dependencies: ["CMPISys"]),
        // Signal flags and CRC-32C (async-signal-safe C).
        .target(name: "CProcess"),
        // oneDNN matmul behind Tensor's gemm (f32 and bf16) and the rank's thread pool (C, for the atomics).
        .target(
            name: "CCompute", cSettings: [.unsafeFlags(["-fno-math-errno"])],
            linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp"), .linkedLibrary("pthread")]),

        // MARK: Swift modules
        .target(name: "Tensor", dependencies: ["CBLAS", "CCompute"], swiftSettings: fast),
        // Audio: decode (libsndfile), resample (libsamplerate), Kaldi fbank, manifests, data order, masking, loader
        .target(name: "Audio", dependencies: ["Tensor", "CSndFile", "CSampleRate"], swiftSettings: fast),
        .target(
            name: "W2VBert", dependencies: ["Tensor", "CCompute", .product(name: "Yams", package: "Yams")],
            swiftSettings: fast),
        .target(name: "Distributed", dependencies: ["CMPI"], swiftSettings: fast),
        .target(
            name: "Training", dependencies: ["Tensor", "Distributed", "Audio", "W2VBert", "CProcess"],
            swiftSettings: fast),
        .executableTarget(
            name: "w2vbert",
            dependencies: [
                "Tensor", "Distributed", "Training", "Audio", "W2VBert", "CProcess",
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ],
            swiftSettings: fast),

        // MARK: Tests
        .target(name: "TestSupport", dependencies: ["Tensor"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "TestSupport", "w2vbert"]),
        .testTarget(
            name: "TrainingTests", dependencies: ["Training", "Tensor", "TestSupport", "w2vbert"], exclude: ["Fixtures"]
        ),
        .testTarget(name: "AudioTests", dependencies: ["Audio", "Tensor"], exclude: ["Fixtures"]),
        .testTarget(name: "W2VBertTests", dependencies: ["W2VBert", "Tensor", "Audio"], exclude: ["twin", "fixtures"])
    ],
    swiftLanguageModes: [.v6]
)
