import Foundation

/// Runs a command with a timeout; returns (exit status, stdout+stderr). Kills the process group on timeout.
public func runCommand(
    _ args: [String], environment: [String: String] = [:], timeout: TimeInterval,
    cwd: String? = nil
) throws -> (status: Int32, output: String, timedOut: Bool) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    p.environment = env
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("w2v-cmd-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    let h = try FileHandle(forWritingTo: out)
    p.standardOutput = h
    p.standardError = h
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while p.isRunning {
        if Date() > deadline {
            timedOut = true
            kill(-p.processIdentifier, SIGKILL)
            p.terminate()
            break
        }
        usleep(50_000)
    }
    p.waitUntilExit()
    try h.close()
    let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
    try? FileManager.default.removeItem(at: out)
    return (p.terminationStatus, text, timedOut)
}

/// The w2vbert executable built next to the test bundle (swift build puts products in one folder).
public func w2vbertExecutable() -> String {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // The test runner lives in .../release/<pkg>PackageTests.xctest (a file on Linux).
    for _ in 0..<3 {
        let candidate = dir.appendingPathComponent("w2vbert").path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return "w2vbert"
}

/// Environment for mpirun as root in a container (docs/clusters.md).
public let mpirunEnvironment: [String: String] = [
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_rmaps_base_oversubscribe": "1"
]
