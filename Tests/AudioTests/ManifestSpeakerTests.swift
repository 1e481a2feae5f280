import XCTest
import Foundation
import Audio

/// adapter.speaker = table: The manifest's optional third column, a speaker label per row.
final class ManifestSpeakerTests: XCTestCase {
    func write(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "w2v-manifest-\(UUID().uuidString.prefix(8)).tsv"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// Without the column: no labels, no per-entry indices, and encoded() gives the file back byte for byte.
    func testWithoutColumnReadsAsBefore() throws {
        let text = "/data/root\na/x.ogg\t16000\nb/y.ogg\t32000\n"
        let m = try Manifest.read(path: try write(text))
        XCTAssertFalse(m.hasSpeakers)
        XCTAssertEqual(m.speakerLabels, [])
        XCTAssertEqual(m.speakers, [])
        XCTAssertEqual(m.speaker(1), -1)
        XCTAssertEqual(
            m,
            Manifest(
                root: "/data/root",
                entries: [.init(path: "a/x.ogg", samples: 16000), .init(path: "b/y.ogg", samples: 32000)]))
        XCTAssertEqual(m.encoded(), text)
    }

    /// With the column on some rows: labels interned and sorted, unlabelled rows (and an empty column) unknown,
    /// columns after the label ignored, CRLF tolerated; encoded() writes it back and reads to the same manifest.
    func testWithColumnInternedSortedAndRoundTrips() throws {
        let text =
            "/r\nlevel/a-v-1.ogg\t100\tv\nhelp1.ogg\t200\nlevel/b-m-2.ogg\t300\tm\nlevel/c-v-3.ogg\t400\tv\textra\nx.ogg\t500\t\r\nk.ogg\t600\tbig fish\n"
        let path = try write(text)
        let m = try Manifest.read(path: path)
        XCTAssertTrue(m.hasSpeakers)
        XCTAssertEqual(m.speakerLabels, ["big fish", "m", "v"])
        XCTAssertEqual(m.speakers, [2, -1, 1, 2, -1, 0])
        XCTAssertEqual(m.entries.map(\.samples), [100, 200, 300, 400, 500, 600])
        let expected =
            "/r\nlevel/a-v-1.ogg\t100\tv\nhelp1.ogg\t200\nlevel/b-m-2.ogg\t300\tm\nlevel/c-v-3.ogg\t400\tv\nx.ogg\t500\nk.ogg\t600\tbig fish\n"
        XCTAssertEqual(m.encoded(), expected)
        let out = path + ".out.tsv"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: out) }
        try m.write(to: out)
        XCTAssertEqual(try Manifest.read(path: out), m)
        // The same manifest built in code.
        XCTAssertEqual(Manifest(root: "/r", entries: m.entries, labels: ["v", nil, "m", "v", nil, "big fish"]), m)
    }

    /// Relabelling to a run's table: known labels map to the table's indices, others to unknown.
    func testRelabelledToTable() throws {
        let m = try Manifest.read(path: try write("/r\na\t1\tv\nb\t2\nc\t3\tz\nd\t4\tm\n"))
        let r = m.relabelled(to: ["a", "m", "v"])
        XCTAssertEqual(r.speakerLabels, ["a", "m", "v"])
        XCTAssertEqual(r.speakers, [2, -1, -1, 1])
        XCTAssertEqual(r.encoded(), "/r\na\t1\tv\nb\t2\nc\t3\nd\t4\tm\n")
        let plain = try Manifest.read(path: try write("/r\na\t1\n"))
        XCTAssertEqual(plain.relabelled(to: ["m"]).speaker(0), -1)
    }

    /// Bad rows name the file and the line.
    func testBadRowsNameFileAndLine() throws {
        for (text, line, words) in [
            ("/r\na\t1\tm\nb\t2\t m\n", 3, "starts or ends with a space"),
            ("/r\na\t1\tm \n", 2, "starts or ends with a space"),
            ("/r\na\t1\tm\nb\t\tm\n", 3, "expected 'relative/path<TAB>num_samples[<TAB>speaker]'"),
            ("/r\na\tx1\tm\n", 2, "expected 'relative/path<TAB>num_samples[<TAB>speaker]'")
        ] {
            let path = try write(text)
            XCTAssertThrowsError(try Manifest.read(path: path)) { e in
                let s = "\(e)"
                XCTAssert(s.hasPrefix(path + ": format: line \(line): ") && s.contains(words), s)
            }
        }
    }
}
