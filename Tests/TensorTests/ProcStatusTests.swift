import Tensor
import XCTest

/// The peak and current resident memory that `bench` reports come from /proc/self/status lines whose padding
/// shrinks as the number grows; a peak of 10 GB and more (8 digits of kB) has none left.
final class ProcStatusTests: XCTestCase {
    func testStatusLinesWithAndWithoutPadding() {
        XCTAssertEqual(statusLineBytes("VmHWM:\t 9736452 kB\n", key: "VmHWM:"), 9_736_452 * 1024)
        XCTAssertEqual(statusLineBytes("VmHWM:\t13574084 kB\n", key: "VmHWM:"), 13_574_084 * 1024)
        XCTAssertEqual(statusLineBytes("VmRSS:\t     512 kB", key: "VmRSS:"), 512 * 1024)
        XCTAssertNil(statusLineBytes("VmRSS:\t     512 kB", key: "VmHWM:"))
    }

    func testThisProcessHasAPeak() {
        XCTAssertGreaterThan(peakResidentBytes(), 1 << 20)
        XCTAssertGreaterThanOrEqual(peakResidentBytes(), residentBytes())
    }
}
