import Audio
import Foundation
import XCTest

/// `prepare`'s folder walk lists every file once, by device and inode: folder link loops, folders and
/// files reached by several paths (symbolic and hard links) are left out and reported.
final class ScanDuplicatesTests: XCTestCase {
    let fm = FileManager.default

    func wav(_ url: URL, seconds: Double, seed: Double = 1) throws {
        try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try AudioWriter.write(
            path: url.path, samples: speechLike(rate: 16000, seconds: seconds, seed: seed),
            sampleRate: 16000)
    }

    /// A folder of four WAV files with a link back up the tree (`a/loop -> ../a`): each file once, the loop
    /// reported once. (Followed blindly, the loop repeats every file until the kernel's limit of 40 links.)
    func testFolderLinkLoopListsEachFileOnce() throws {
        let root = try makeTempDir(self)
        let a = root.appendingPathComponent("a")
        for i in 0..<4 { try wav(a.appendingPathComponent("x\(i).wav"), seconds: 1 + 0.1 * Double(i), seed: Double(i)) }
        try fm.createSymbolicLink(atPath: a.appendingPathComponent("loop").path, withDestinationPath: "../a")
        var prep = CorpusPreparer()
        prep.validPercent = 0
        let scan = try prep.scan(root: root.path)
        XCTAssertEqual(scan.files, ["a/x0.wav", "a/x1.wav", "a/x2.wav", "a/x3.wav"])
        XCTAssertEqual(scan.duplicates, [.init(kind: .loop, path: "a/loop", sameAs: "a")])
        XCTAssertEqual(scan.duplicates[0].description, "a/loop: folder loop back to a, not followed")
        let r = try prep.prepare(root: root.path)
        XCTAssertEqual(r.scanned, 4)
        XCTAssertEqual(r.train.entries.map(\.path), scan.files)
        XCTAssertEqual(r.train.entries.map(\.samples), [16000, 17600, 19200, 20800])
        XCTAssertEqual(r.duplicates, scan.duplicates)
        XCTAssert(r.skipped.isEmpty)
    }

    /// A hard link, two symbolic links to one file outside the tree, a symbolic link to a file inside it,
    /// two links to one folder outside the tree and a link to the root: each file listed once, under the
    /// first of its paths in sorted order; the folder outside walked once; the duplicates counted.
    func testHardAndSymbolicLinksListEachFileOnce() throws {
        let root = try makeTempDir(self)
        let outside = try makeTempDir(self)
        try wav(root.appendingPathComponent("m/real.wav"), seconds: 1)
        // The hard link sorts before the name it was created from: the sorted-first path is kept.
        try fm.linkItem(
            atPath: root.appendingPathComponent("m/real.wav").path,
            toPath: root.appendingPathComponent("b/hard.wav").path.creatingFolder())
        try wav(outside.appendingPathComponent("o.wav"), seconds: 2)
        try wav(outside.appendingPathComponent("sub/deep.wav"), seconds: 3)
        try fm.createSymbolicLink(
            atPath: root.appendingPathComponent("s/one.wav").path.creatingFolder(),
            withDestinationPath: outside.appendingPathComponent("o.wav").path)
        try fm.createSymbolicLink(
            atPath: root.appendingPathComponent("s/two.wav").path,
            withDestinationPath: outside.appendingPathComponent("o.wav").path)
        try fm.createSymbolicLink(
            atPath: root.appendingPathComponent("s/inside.wav").path,
            withDestinationPath: "../m/real.wav")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("ext1").path, withDestinationPath: outside.path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("ext2").path, withDestinationPath: outside.path)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("m/up").path, withDestinationPath: "..")
        var prep = CorpusPreparer()
        prep.validPercent = 0
        let r = try prep.prepare(root: root.path)
        XCTAssertEqual(r.train.entries.map(\.path), ["b/hard.wav", "ext1/o.wav", "ext1/sub/deep.wav"])
        XCTAssertEqual(r.train.entries.map(\.samples), [16000, 32000, 48000])
        XCTAssertEqual(r.scanned, 3)
        XCTAssertEqual(
            r.duplicates,
            [
                .init(kind: .folder, path: "ext2", sameAs: "ext1"),
                .init(kind: .loop, path: "m/up", sameAs: "."),
                .init(kind: .file, path: "m/real.wav", sameAs: "b/hard.wav"),
                .init(kind: .file, path: "s/inside.wav", sameAs: "b/hard.wav"),
                .init(kind: .file, path: "s/one.wav", sameAs: "ext1/o.wav"),
                .init(kind: .file, path: "s/two.wav", sameAs: "ext1/o.wav")
            ])
        let scan = try prep.scan(root: root.path)
        XCTAssertEqual(scan.duplicateFiles, 4)
        XCTAssertEqual(scan.duplicateFolders, 2)
        XCTAssertEqual(scan.duplicates[0].description, "ext2: the same folder as ext1, not walked again")
        XCTAssertEqual(scan.duplicates[2].description, "m/real.wav: the same file as b/hard.wav, listed once")
    }

    /// Dangling links and hidden names are ignored; a root that is not a folder is refused by name.
    func testDanglingLinksIgnoredAndBadRootRefused() throws {
        let root = try makeTempDir(self)
        try wav(root.appendingPathComponent("k.wav"), seconds: 1)
        try wav(root.appendingPathComponent(".hidden/h.wav"), seconds: 1)
        try fm.createSymbolicLink(
            atPath: root.appendingPathComponent("gone.wav").path,
            withDestinationPath: "nowhere.wav")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("gone").path, withDestinationPath: "no-folder")
        let scan = try CorpusPreparer().scan(root: root.path)
        XCTAssertEqual(scan, CorpusScan(files: ["k.wav"]))
        let file = root.appendingPathComponent("k.wav").path
        XCTAssertThrowsError(try CorpusPreparer().scan(root: file)) { e in
            XCTAssertEqual(e as? AudioError, AudioError(.unreadable, path: file, "not a folder"))
        }
    }
}

extension String {
    /// Creates this path's parent folder; returns the path.
    func creatingFolder() throws -> String {
        let parent = (self as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        return self
    }
}
