import Foundation
import XCTest

extension XCTestCase {
    /// A fresh path under the temporary folder named `prefix`-`tag`-<random>, removed after the test.
    public func temporaryPath(_ prefix: String, _ tag: String) -> String {
        let path = NSTemporaryDirectory() + "\(prefix)-\(tag)-\(UUID().uuidString.prefix(8))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Runs `exe` with `args` (one OpenBLAS thread); a timeout fails the test. Returns the status and the output.
    public func runExecutable(
        _ exe: String, _ args: [String], timeout: Double = 120
    ) throws -> (status: Int32, output: String) {
        let r = try runCommand([exe] + args, environment: ["OPENBLAS_NUM_THREADS": "1"], timeout: timeout)
        XCTAssertFalse(r.timedOut, "timed out: \(args)")
        return (r.status, r.output)
    }
}
