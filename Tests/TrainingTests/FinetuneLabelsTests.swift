import XCTest
import Audio
import W2VBert
import Training

/// The labels of fine-tuning: dictionary of the run, per-entry ids, skipped utterances, and bad input named by
/// file and line before training starts.
final class FinetuneLabelsTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "ftlabels-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/run", withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// A manifest of `samples` rows (files need not exist: nothing is decoded) and its .wrd.
    func write(_ name: String, samples: [Int], words: [String]) throws -> (Manifest, String) {
        let tsv = "\(dir)/\(name).tsv"
        let body = "/nowhere\n" + samples.enumerated().map { "u\($0.offset).wav\t\($0.element)\n" }.joined()
        try body.write(toFile: tsv, atomically: true, encoding: .utf8)
        try words.map { $0 + "\n" }.joined().write(toFile: "\(dir)/\(name).wrd", atomically: true, encoding: .utf8)
        return (try Manifest.read(path: tsv), tsv)
    }

    func prepare(
        _ train: (Manifest, String), _ valid: (Manifest, String)? = nil, dict: String? = nil, resume: Bool = true,
        config: Config? = nil
    ) throws -> FinetuneLabels {
        try FinetuneLabels.prepare(
            config: try config ?? Config.preset("tiny"), train: train.0, trainPath: train.1, valid: valid?.0,
            validPath: valid?.1, runDirectory: dir + "/run", dictPath: dict, resume: resume)
    }

    func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "no error"
        } catch { return "\(error)" }
    }

    func testLabelsSkipsAndDictionary() throws {
        let one = 16_000  // 1 s: 98 fbank frames, 23 encoder frames with conv2d
        let train = try write("train", samples: [one, one, 300_000, one], words: ["Ahoj světe", "", "dlouhé", "aa"])
        let valid = try write("valid", samples: [one], words: ["hoj"])
        let l = try prepare(train, valid)
        XCTAssertEqual(l.vocabulary.symbols.first, "|")
        XCTAssertEqual(l.train[0], try l.vocabulary.encode("ahoj světe", path: "", line: 0))
        XCTAssertEqual(l.train[1], [])
        XCTAssertEqual(l.train[2], [])  // longer than train.max_samples (250000)
        XCTAssertEqual(l.trainLengths, [one, 0, 0, one])
        XCTAssertEqual(l.skipped.train, FinetuneLabels.Skipped(unlabelled: 1, tooLong: 1))
        XCTAssertEqual(l.valid.count, 1)
        XCTAssertNotNil(l.skippedSummary)
        try l.record(runDirectory: dir + "/run")
        XCTAssertEqual(try CTCVocabulary.read(path: dir + "/run/dict.ltr.txt"), l.vocabulary)
        // Resumed: the run's dictionary is read back; a different --dict is refused naming both files.
        try "| 1\nx 1\n".write(toFile: dir + "/other.txt", atomically: true, encoding: .utf8)
        let m = message { _ = try prepare(train, dict: dir + "/other.txt") }
        XCTAssertTrue(m.contains(dir + "/other.txt") && m.contains(dir + "/run/dict.ltr.txt"), m)
        XCTAssertEqual(try prepare(train).vocabulary, l.vocabulary)
    }

    func testBadInputNamesFileAndLine() throws {
        let one = 16_000
        let short = try write("short", samples: [one, one], words: ["ahoj"])
        XCTAssertTrue(message { _ = try prepare(short) }.contains("short.wrd: has 1 lines"))
        // A character that is not in --dict.
        try "| 1\na 1\nh 1\no 1\nj 1\n".write(toFile: dir + "/dict.txt", atomically: true, encoding: .utf8)
        let odd = try write("odd", samples: [one, one], words: ["ahoj", "ahoj x"])
        let m = message { _ = try prepare(odd, dict: dir + "/dict.txt", resume: false) }
        XCTAssertTrue(m.contains("odd.wrd:2: character 'x'"), m)
        // A transcript its audio cannot carry: 23 encoder frames, 30 letters.
        let long = try write("long", samples: [one, one], words: ["ahoj", String(repeating: "ab", count: 15)])
        let n = message { _ = try prepare(long, resume: false) }
        XCTAssertTrue(n.contains("long.wrd:2: the transcript needs at least 30 frames"), n)
        XCTAssertTrue(n.contains("gives 23 encoder frames"), n)
        // A bad valid transcript is found before training too.
        let train = try write("t2", samples: [one], words: ["ahoj"])
        let valid = try write(
            "v2", samples: [one, one], words: ["ahoj", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
        XCTAssertTrue(message { _ = try prepare(train, valid, resume: false) }.contains("v2.wrd:2:"))
    }
}
