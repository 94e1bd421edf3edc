// fuzz_config: the YAML configuration loader and validator (Sources/WeftModel).
//
// Input: a YAML document as weftd reads it (`weftd validate --config`). Lines
// `#!NAME=value` (YAML comments) set NSM_VXLAN_PORT, NSM_TUNNEL_IP,
// NSM_DEVICE_SELECTOR_FILE or NSM_LABELS for this input: the loader reads
// them from the process environment (ConfigLoader.applyEnvironment).
//
// Invariants (a broken one traps with "INVARIANT: ..."):
//  - ConfigLoader.parse returns a configuration or throws ConfigErrors: at
//    least one error, each with this file's name, a non-empty message, a
//    line (if any) inside the document.
//  - It returns a configuration exactly when the document decodes and the
//    decoded configuration, with the environment applied, has no validation
//    issue; then it returns that configuration. When it throws for issues,
//    its errors are those issues, one for one, in order, each with a line.
//  - Validator.validate never crashes, is deterministic, and every issue has a
//    non-empty message and a path that starts at one of the configuration's
//    top-level keys.
//    Validator.validate(interface:) issues are among the whole's, under the
//    interface's index.
//  - applyEnvironment is idempotent; the configuration survives a JSON round
//    trip (weftctl and weftd exchange these types as JSON).
//  - A valid configuration converts to EAL arguments and dataplane settings
//    (integer narrowing that traps on out-of-range values) without trapping.
//  - NodeIndex.check (the APIs' incremental validation) reaches the verdict
//    Validator reaches on the whole, for a valid prefix of the configuration
//    plus the rest as one change (NodeIndexTests' property).
//  - normalizedPCI is idempotent; CIDR, IP and MAC text round-trips.
//  - Every digits-and-colons run in the input, as an integer value
//    (`vxlan_port: 1:30`), is a value or an error, never a trap in Yams.
import Foundation
import WeftModel
import Yams

let envNames = ["NSM_VXLAN_PORT", "NSM_TUNNEL_IP", "NSM_DEVICE_SELECTOR_FILE", "NSM_LABELS"]
let fileName = "fuzz.yaml"

func violated(_ what: @autoclosure () -> String) -> Never {
    let m = "INVARIANT: " + what() + "\n"
    FileHandle.standardError.write(Data(m.utf8))
    fatalError(m)
}

func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { violated(what()) }
}

/// `#!NAME=value` lines: the environment this input runs with.
func environment(of text: String) -> [String: String] {
    var env: [String: String] = [:]
    for line in text.split(separator: "\n") where line.hasPrefix("#!") {
        let kv = line.dropFirst(2).split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard kv.count == 2, envNames.contains(String(kv[0])), !kv[1].contains("\0") else { continue }
        env[String(kv[0])] = String(kv[1])
    }
    return env
}

/// The highest line number a mark in `text` can have (libyaml counts \r, \n,
/// NEL, LS and PS as breaks).
func maxLine(_ text: String) -> Int {
    var n = 2
    for u in text.unicodeScalars where u == "\n" || u == "\r" || u == "\u{85}" || u == "\u{2028}" || u == "\u{2029}" { n += 1 }
    return n
}

/// `topKeys`: the configuration's top-level keys (its JSON encoding's: CodingKeys).
func checkIssues(_ issues: [ValidationIssue], _ c: WeftConfig, topKeys: Set<String>) {
    for i in issues {
        check(!i.message.isEmpty, "an issue without a message at \(i.path)")
        guard case .key(let k)? = i.path.first, topKeys.contains(k) else {
            violated("issue '\(i.message)' does not start at a key of the configuration: \(i.path)")
        }
    }
    for (n, itf) in c.interfaces.enumerated() {
        let own = Validator.validate(interface: itf)
        check(own == Validator.validate(interface: itf), "validate(interface:) is not deterministic")
        for o in own {
            let whole = ValidationIssue(path: [.key("interfaces"), .index(n)] + o.path, message: o.message)
            check(issues.contains(whole), "validate(interface:) issue \(o) of interfaces[\(n)] is not among the whole's")
        }
    }
}

/// NodeIndexTests' property on this configuration: base = a valid prefix,
/// the rest of the interfaces and cross-connects added as one change.
func checkIndex(_ c: WeftConfig) {
    let ni = c.interfaces.count, nx = c.crossConnects.count
    var splits = Set<[Int]>()
    for k in [0, ni / 2, ni - 1, ni] where k >= 0 {
        for m in [0, nx - 1, nx] where m >= 0 && (k, m) != (ni, nx) { splits.insert([k, m]) }
    }
    for s in splits {
        var base = c
        base.interfaces = Array(c.interfaces[..<s[0]])
        base.crossConnects = Array(c.crossConnects[..<s[1]])
        guard Validator.validate(base).isEmpty else { continue }
        let adding = Array(c.interfaces[s[0]...]), xcs = Array(c.crossConnects[s[1]...])
        let full = Validator.validate(c)
        let delta = NodeIndex(base).check(adding: adding, crossConnects: xcs, removing: [], node: base)
        check(full.isEmpty == delta.isEmpty,
              "NodeIndex.check and Validator disagree (base: first \(s[0]) interfaces, \(s[1]) cross-connects): full \(full); delta \(delta)")
    }
}

func checkHelpers(_ c: WeftConfig) {
    for itf in c.interfaces {
        if let p = itf.pci, let n = normalizedPCI(p) { check(normalizedPCI(n) == n, "normalizedPCI('\(p)') = '\(n)' is not a fixed point") }
        if let m = itf.mac, let b = parseMAC(m) {
            let t = b.map { String(format: "%02x", $0) }.joined(separator: ":")
            check(parseMAC(t) == b, "MAC '\(m)' does not round-trip")
        }
        for s in [itf.remote, itf.underlay?.gateway4, itf.underlay?.gateway6].compactMap({ $0 }) {
            if let b = IPAddress.parse(s) { check(IPAddress.parse(IPAddress.format(b)) == b, "IP '\(s)' does not round-trip") }
        }
        for s in [itf.underlay?.ipv4, itf.underlay?.ipv6].compactMap({ $0 }) {
            if let x = CIDR(s) { check(CIDR(x.description) == x, "CIDR '\(s)' -> '\(x)' does not round-trip") }
        }
    }
}

/// Every run of digits, signs, '_' and ':' in the input (comments too) with a
/// ':' in it, read as the integer vxlan_port: what the loader lets through to
/// Yams's base-60 integer reading must not trap there. Runs of fewer than 7
/// digits are skipped: 6 digits make at most 6 groups, worth less than
/// 10^6 * 60^5 < 10^15, far from Int.max; and each parse here costs about as
/// much as the input's own.
func checkIntegers(_ text: String) {
    let chars = Set("0123456789+-_:".unicodeScalars)
    var tokens = Set<String>(), cur = ""
    func keep() {
        if cur.contains(":"), cur.count <= 80, cur.unicodeScalars.filter({ $0.value >= 48 && $0.value <= 57 }).count >= 7 {
            tokens.insert(cur)
        }
        cur = ""
    }
    for u in text.unicodeScalars {
        if chars.contains(u) { cur.unicodeScalars.append(u); continue }
        keep()
    }
    keep()
    for t in tokens.sorted().prefix(8) { _ = try? ConfigLoader.parse("vxlan_port: \(t)\n", file: fileName) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // As ConfigLoader.load: a file that is not UTF-8 is refused before parsing.
    guard let text = String(data: Data(bytes: data, count: size), encoding: .utf8) else { return -1 }
    checkIntegers(text)
    let env = environment(of: text)
    for n in envNames {
        if let v = env[n] { setenv(n, v, 1) } else { unsetenv(n) }
    }

    // The loader, as weftd runs it.
    let result: Result<WeftConfig, Error> = Result { try ConfigLoader.parse(text, file: fileName) }
    var errors: [ConfigError] = []
    switch result {
    case .success: break
    case .failure(let e):
        guard let ce = e as? ConfigErrors else { violated("parse threw \(type(of: e)), not ConfigErrors: \(e)") }
        check(!ce.errors.isEmpty, "parse threw ConfigErrors without an error")
        check(!ce.description.isEmpty, "ConfigErrors with an empty description")
        for x in ce.errors {
            check(!x.message.isEmpty, "an error without a message: \(x)")
            check(x.file == fileName, "an error names file '\(x.file)'")
            if let l = x.line { check(l >= 1 && l <= maxLine(text), "error line \(l) outside the document (\(maxLine(text)) lines): \(x)") }
        }
        errors = ce.errors
    }

    // The loader refuses a base-60 integer beyond Int before decoding
    // (ConfigLoader.sexagesimalOverflow): Yams would trap on it, here too.
    if errors.count == 1, errors[0].message.contains("base-60 number beyond the integer range") { return 0 }

    // The same document decoded without validation.
    var decoded: WeftConfig?
    if let node = try? Yams.compose(yaml: text, .default, .default, .utf8), case .mapping = node {
        decoded = try? YAMLDecoder(encoding: .utf8).decode(WeftConfig.self, from: node)
    }
    guard let d = decoded else {
        if case .success = result { violated("parse returned a configuration that does not decode") }
        return 0
    }

    var a = d
    ConfigLoader.applyEnvironment(&a, env)
    var twice = a
    ConfigLoader.applyEnvironment(&twice, env)
    check(twice == a, "applyEnvironment is not idempotent")

    // JSON: what weftctl and weftd exchange.
    guard let json = try? JSONEncoder().encode(a) else { violated("a decoded configuration does not encode to JSON") }
    do {
        let back = try JSONDecoder().decode(WeftConfig.self, from: json)
        check(back == a, "the configuration changes in a JSON round trip")
    } catch {
        violated("a configuration's own JSON does not decode: \(error)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
        violated("a configuration encodes to JSON that is not an object")
    }

    let issues = Validator.validate(a)
    check(Validator.validate(a) == issues, "validation is not deterministic")
    checkIssues(issues, a, topKeys: Set(object.keys))

    switch result {
    case .success(let c):
        check(issues.isEmpty, "parse returned a configuration with issues: \(issues)")
        check(c == a, "parse returned a configuration other than the decoded one with the environment applied")
        check(Validator.validate(c).isEmpty, "the returned configuration does not validate")
        // What weftd does next with a valid configuration.
        _ = EALArguments.build(c)
        _ = EALArguments.dataplaneSettings(c)
    case .failure:
        check(!issues.isEmpty, "parse refused a configuration that decodes and has no issues: \(errors)")
        check(errors.count == issues.count, "parse reported \(errors.count) errors for \(issues.count) issues")
        for (e, i) in zip(errors, issues) {
            check(e.path + ": " + e.message == i.description, "error '\(e)' is not issue '\(i)'")
            check(e.line != nil, "a validation error without a line: \(e)")
        }
    }

    checkHelpers(a)
    if !a.interfaces.isEmpty || !a.crossConnects.isEmpty { checkIndex(a) }
    return 0
}
