#if canImport(Glibc)
    import Glibc
#endif

/// Monotonic seconds.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Median wall time of `body` over `repeats` runs after `warmup` runs.
public func medianTime(repeats: Int, warmup: Int = 1, _ body: () -> Void) -> Double {
    for _ in 0..<warmup { body() }
    var ts: [Double] = []
    for _ in 0..<repeats {
        let t0 = monotonicSeconds()
        body()
        ts.append(monotonicSeconds() - t0)
    }
    ts.sort()
    return ts[ts.count / 2]
}

/// Peak resident set size of this process in bytes (VmHWM), 0 if unknown.
public func peakResidentBytes() -> Int { procStatusBytes("VmHWM:") }

/// Current resident set size in bytes (VmRSS), 0 if unknown.
public func residentBytes() -> Int { procStatusBytes("VmRSS:") }

/// A "kB" line of /proc/self/status (e.g. "VmHWM:") in bytes, 0 if absent.
public func procStatusBytes(_ key: String) -> Int {
    guard let f = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, f) != nil {
        let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let bytes = statusLineBytes(s, key: key) { return bytes }
    }
    return 0
}

/// The kB value of a /proc status line "KEY:<tab and spaces>N kB" in bytes (the padding shrinks as N grows:
/// "VmHWM:\t 9736452 kB", "VmHWM:\t13574084 kB"), nil for another key.
public func statusLineBytes(_ line: String, key: String) -> Int? {
    guard line.hasPrefix(key) else { return nil }
    let fields = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
    return fields.first.flatMap { Int($0) }.map { $0 * 1024 }
}
