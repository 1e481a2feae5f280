// The folder walk of `w2vbert prepare`: every audio file under a root, each once.
//
// Symbolic links to folders are followed (a corpus is often a root of links to the wanted subfolders),
// so one folder or file can be reached by several paths: a link back up the tree (`a/loop -> ../a`), two
// links to one folder, a hard link, two links to one file. Folders and files are identified by device and
// inode (stat(2), following links), never by their path:
//  - folders are walked in sorted order of their relative paths (a min-heap: every child sorts after its
//    parent, so the order is global), and a folder whose identity was walked already is not
//    walked again; it is a loop when the first path is one of its ancestors (the root included);
//  - files are listed once per identity, under the first of their paths in sorted order (the order the
//    manifests use); the other paths are duplicates.
// The result depends only on the tree, not on the order the file system lists a folder in.

import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// What a scan found: the audio files to check, and the paths left out because they reach a file or
/// folder that is listed (or walked) under another path.
public struct CorpusScan: Sendable, Equatable {
    /// Relative paths of the audio files, sorted, one per file (device and inode).
    public var files: [String]
    /// Paths not listed or not walked, in sorted order: folders first, then files.
    public var duplicates: [Duplicate]

    public struct Duplicate: Sendable, Equatable, CustomStringConvertible {
        public enum Kind: String, Sendable {
            case loop  // a folder link leading back to one of its own ancestors
            case folder  // a folder walked already under another path
            case file  // a file listed already under another path (hard link, symbolic link)
        }
        public let kind: Kind
        /// The path left out, relative to the root.
        public let path: String
        /// The path the folder or file is walked or listed under ("." for the root).
        public let sameAs: String

        public init(kind: Kind, path: String, sameAs: String) {
            self.kind = kind
            self.path = path
            self.sameAs = sameAs
        }

        /// One line naming the path: "a/loop: folder loop back to a, not followed".
        public var description: String {
            switch kind {
            case .loop: return "\(path): folder loop back to \(sameAs), not followed"
            case .folder: return "\(path): the same folder as \(sameAs), not walked again"
            case .file: return "\(path): the same file as \(sameAs), listed once"
            }
        }
    }

    public var duplicateFiles: Int { duplicates.filter { $0.kind == .file }.count }
    public var duplicateFolders: Int { duplicates.count - duplicateFiles }

    public init(files: [String], duplicates: [Duplicate] = []) {
        self.files = files
        self.duplicates = duplicates
    }
}

/// A file's identity: device and inode.
struct FileIdentity: Hashable {
    let device: UInt64
    let inode: UInt64

    /// stat(2) of `path`, following symbolic links: its identity and whether it is a folder (nil when it
    /// does not exist, or is a dangling link).
    static func of(_ path: String) -> (id: FileIdentity, isFolder: Bool)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let device = UInt64(truncatingIfNeeded: st.st_dev)
        let id = FileIdentity(device: device, inode: UInt64(truncatingIfNeeded: st.st_ino))
        return (id, (st.st_mode & S_IFMT) == S_IFDIR)
    }
}

/// The walk (see the header comment). Hidden names (starting with ".") are skipped; extensions are
/// matched case-insensitively.
struct CorpusWalk {
    typealias Entry = (path: String, id: FileIdentity)
    let root: String
    let extensions: Set<String>

    func run() throws(AudioError) -> CorpusScan {
        guard let top = FileIdentity.of(root), top.isFolder else {
            throw AudioError(.unreadable, path: root, "not a folder")
        }
        var walked = [FileIdentity: String]()
        var folderDuplicates = [CorpusScan.Duplicate]()
        var audio = [Entry]()
        var queue = PathHeap()
        queue.push(("", top.id))
        while let (rel, id) = queue.popFirst() {
            if let first = walked[id] {
                let isAncestor = first.isEmpty || rel.hasPrefix(first + "/")
                folderDuplicates.append(
                    .init(
                        kind: isAncestor ? .loop : .folder, path: rel,
                        sameAs: first.isEmpty ? "." : first))
                continue
            }
            walked[id] = rel
            let dir = rel.isEmpty ? root : root + "/" + rel
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                if rel.isEmpty { throw AudioError(.unreadable, path: root, "cannot list folder") }
                continue
            }
            for name in names where !name.hasPrefix(".") {
                let child = rel.isEmpty ? name : rel + "/" + name
                guard let (childID, isFolder) = FileIdentity.of(root + "/" + child) else { continue }
                if isFolder {
                    queue.push((child, childID))
                } else if extensions.contains((name as NSString).pathExtension.lowercased()) {
                    audio.append((child, childID))
                }
            }
        }
        audio.sort { $0.path < $1.path }
        var listed = [FileIdentity: String]()
        var files = [String]()
        var fileDuplicates = [CorpusScan.Duplicate]()
        for (path, id) in audio {
            if let first = listed[id] {
                fileDuplicates.append(.init(kind: .file, path: path, sameAs: first))
            } else {
                listed[id] = path
                files.append(path)
            }
        }
        return CorpusScan(files: files, duplicates: folderDuplicates + fileDuplicates)
    }
}

/// A binary min-heap of walk entries by path: `popFirst` returns the smallest path. O(log n) per operation,
/// so a folder with many subfolders costs no more than listing them.
struct PathHeap {
    private var items = [CorpusWalk.Entry]()

    mutating func push(_ item: CorpusWalk.Entry) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].path <= items[i].path { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func popFirst() -> CorpusWalk.Entry? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let first = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var smallest = i
            if l < items.count && items[l].path < items[smallest].path { smallest = l }
            if r < items.count && items[r].path < items[smallest].path { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return first
    }
}
