// fuzz_admin: the admin socket's request decoder (Sources/WeftAdmin), as
// AdminServer.handle runs it on one request line from weftctl.
//
// Invariants (a broken one traps with "INVARIANT: ..."):
//  - a request that decodes encodes, and its JSON decodes to an equal request;
//  - what weftd does with its parts does not crash: the interface of
//    add-interface alone and in a configuration, the cross-connect of
//    add-cross-connect, through Validator.validate (deterministic, every
//    issue with a message and a path); connect's hint labels through
//    Capabilities.mode (a mode or an ApplyError with a message).
import Foundation
import WeftAdmin
import WeftModel

func violated(_ what: @autoclosure () -> String) -> Never {
    let m = "INVARIANT: " + what() + "\n"
    FileHandle.standardError.write(Data(m.utf8))
    fatalError(m)
}

func check(_ ok: Bool, _ what: @autoclosure () -> String) {
    if !ok { violated(what()) }
}

func validated(_ c: WeftConfig) {
    let issues = Validator.validate(c)
    check(Validator.validate(c) == issues, "validation is not deterministic")
    for i in issues {
        check(!i.message.isEmpty && !i.path.isEmpty, "an issue without a message or a path: \(i)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAdmin(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // AdminServer reads up to the first newline; the rest of the line is the request.
    var line = Data(bytes: data, count: size)
    if let nl = line.firstIndex(of: 0x0a) { line = line.prefix(upTo: nl) }
    guard let req = try? JSONDecoder().decode(AdminRequest.self, from: line) else { return 0 }

    let json: Data
    do { json = try JSONEncoder().encode(req) } catch { violated("a decoded request does not encode: \(error)") }
    check(!json.contains(0x0a), "an encoded request contains a newline (the protocol is one line)")
    do {
        let back = try JSONDecoder().decode(AdminRequest.self, from: json)
        check(back == req, "the request changes in a JSON round trip: \(req) -> \(back)")
    } catch {
        violated("a request's own JSON does not decode: \(error)\n\(String(decoding: json, as: UTF8.self))")
    }

    if let itf = req.interface {
        let own = Validator.validate(interface: itf)
        check(Validator.validate(interface: itf) == own, "validate(interface:) is not deterministic")
        validated(WeftConfig(interfaces: [itf]))
    }
    if let x = req.crossConnect {
        validated(WeftConfig(interfaces: [InterfaceConfig(name: x.a, type: .ring), InterfaceConfig(name: x.b, type: .ring)],
                             crossConnects: [x]))
    }
    if let hints = req.labels {
        do { _ = try Capabilities.mode(hints: hints, offered: Capabilities.defaultLabels) } catch {
            check(!"\(error)".isEmpty, "Capabilities.mode threw an error without a message")
        }
    }
    return 0
}
