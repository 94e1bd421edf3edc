import ArgumentParser
import Foundation
import WeftAdmin
import WeftModel

@main
struct Weftctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weftctl",
        abstract: "Inspect and change a running weftd over its admin socket.",
        subcommands: [Show.self, Watch.self, Trace.self, Capture.self, InterfaceCommand.self, CrossConnectCommand.self, Connect.self, Disconnect.self, Reload.self]
    )
}

struct Connection: ParsableArguments {
    @Option(help: "weftd's admin socket.")
    var socket: String = ProcessInfo.processInfo.environment["WEFT_ADMIN_SOCKET"] ?? "/run/weft/weftd.sock"

    func send(_ req: AdminRequest) throws -> AdminResponse {
        let r: AdminResponse
        do { r = try AdminClient.send(req, socketPath: socket) } catch {
            FileHandle.standardError.write(Data("weftctl: \(error)\n".utf8))
            throw ExitCode(2)
        }
        guard r.ok else {
            FileHandle.standardError.write(Data("weftctl: \(r.error ?? "request failed")\n".utf8))
            throw ExitCode(1)
        }
        return r
    }
}

func printJSON<T: Encodable>(_ v: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try e.encode(v), as: UTF8.self))
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show interfaces, cross-connects, drops or workers.")

    enum What: String, ExpressibleByArgument, CaseIterable {
        case interfaces, xconnects, drops, workers, counters, neighbours, groups
    }
    @Argument(help: "interfaces | xconnects | groups | drops | workers | neighbours | counters (interfaces + xconnects + drops)")
    var what: What
    @Flag(help: "Print JSON instead of a table.")
    var json = false
    @Flag(help: "interfaces, xconnects, workers: packets/s, bits/s and drops/s over --interval instead of totals.")
    var rate = false
    @Option(help: "Seconds between the two readings of --rate.")
    var interval: Double = 1
    @OptionGroup var conn: Connection

    func validate() throws {
        if rate && ![.interfaces, .xconnects, .workers].contains(what) {
            throw ValidationError("--rate applies to interfaces, xconnects and workers")
        }
        guard interval > 0, interval <= 3600 else { throw ValidationError("--interval must be in (0, 3600] seconds") }
    }

    func run() throws {
        if rate {
            let r = try LiveRates(conn: conn, what: what).measure(interval: interval)
            if json { try r.printJSON() } else { print(r.table) }
            return
        }
        switch what {
        case .interfaces:
            let r = try conn.send(.init(command: .showInterfaces))
            json ? try printJSON(r.interfaces ?? []) : print(Render.interfaces(r.interfaces ?? []))
        case .xconnects:
            let r = try conn.send(.init(command: .showCrossConnects))
            json ? try printJSON(r.crossConnects ?? []) : print(Render.crossConnects(r.crossConnects ?? []))
        case .drops:
            let r = try conn.send(.init(command: .showDrops))
            json ? try printJSON(r.drops ?? []) : print(Render.drops(r.drops ?? []))
        case .workers:
            let r = try conn.send(.init(command: .showWorkers))
            json ? try printJSON(r.workers ?? []) : print(Render.workers(r.workers ?? [], tscHz: r.tscHz ?? 0))
        case .groups:
            let r = try conn.send(.init(command: .showGroups))
            json ? try printJSON(r.groups ?? []) : print(Render.groups(r.groups ?? [], labels: r.labels ?? [:]))
        case .neighbours:
            let r = try conn.send(.init(command: .showNeighbours))
            if json { try printJSON(r.neighbours ?? []) } else {
                let i = try conn.send(.init(command: .showInterfaces)).interfaces ?? []
                print(Render.neighbours(r.neighbours ?? [], interfaces: i))
            }
        case .counters:
            let i = try conn.send(.init(command: .showInterfaces)).interfaces ?? []
            let x = try conn.send(.init(command: .showCrossConnects)).crossConnects ?? []
            let d = try conn.send(.init(command: .showDrops)).drops ?? []
            if json {
                struct All: Encodable { var interfaces: [InterfaceStatus]; var crossConnects: [CrossConnectStatus]; var drops: [DropStatus] }
                try printJSON(All(interfaces: i, crossConnects: x, drops: d))
            } else {
                print(Render.interfaces(i) + "\n\n" + Render.crossConnects(x) + "\n\n" + Render.drops(d))
            }
        }
    }
}

struct InterfaceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "interface", abstract: "Add or delete an interface at runtime.",
                                                    subcommands: [Add.self, Delete.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an interface (same checks as the config file).")
        @Argument var name: String
        @Option(help: "memif | af_packet | af_xdp | kernel | tap | pci | null | vdev | vlan | vxlan") var type: String
        @Option(help: "Kernel interface (af_packet, af_xdp, kernel, tap).") var iface: String?
        @Option(help: "memif role: server | client.") var role: String?
        @Option(help: "memif socket path (or abstract name with --abstract).") var socketPath: String?
        @Flag(help: "memif: use an abstract socket.") var abstract = false
        @Option(help: "memif interface id.") var id: Int?
        @Option(help: "memif secret.") var secret: String?
        @Option(help: "PCI address.") var pci: String?
        @Option(help: "Raw devargs (vdev) or extra devargs (pci).") var devargs: String?
        @Option(help: "pci: the kernel driver the device needs (default vfio-pci).") var driver: String?
        @Flag(help: "pci: weftd binds the device to its driver (and gives it back when it is deleted).") var bind = false
        @Flag(help: "pci: with --bind, leave the device on that driver when it is deleted.") var noRestore = false
        @Option(help: "MAC address (memif, tap).") var mac: String?
        @Option(help: "RX queues (1-8).") var rxQueues: Int?
        @Option(help: "MTU.") var mtu: Int?
        @Option(help: "vlan/vxlan: the uplink interface.") var uplink: String?
        @Option(help: "vlan: VLAN id (0: untagged).") var vlanId: Int?
        @Option(help: "vxlan: VNI.") var vni: Int?
        @Option(help: "vxlan: remote underlay address.") var remote: String?
        @Option(help: "vxlan: the remote's UDP port (default: the node's vxlan_port).") var port: Int?
        @Option(help: "vxlan: our UDP port (default: the node's vxlan_port).") var localPort: Int?
        @OptionGroup var conn: Connection

        func run() throws {
            guard let t = InterfaceType(rawValue: type) else {
                throw ValidationError("unknown type '\(type)' (expected one of: \(InterfaceType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            var r: MemifRole?
            if let role {
                guard let v = MemifRole(rawValue: role) else { throw ValidationError("role must be server or client") }
                r = v
            }
            let itf = InterfaceConfig(name: name, type: t, iface: iface, role: r, socket: socketPath,
                                      abstract: abstract ? true : nil, id: id, secret: secret, pci: pci,
                                      devargs: devargs, mac: mac, rxQueues: rxQueues, mtu: mtu,
                                      uplink: uplink, vlanID: vlanId, vni: vni, remote: remote, port: port, localPort: localPort,
                                      driver: driver, bind: bind ? true : nil, restore: noRestore ? false : nil)
            let resp = try conn.send(.init(command: .addInterface, interface: itf))
            print(resp.summary.map(\.description) ?? "ok")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete an interface.")
        @Argument var name: String
        @OptionGroup var conn: Connection
        func run() throws {
            let resp = try conn.send(.init(command: .deleteInterface, name: name))
            print(resp.summary.map(\.description) ?? "ok")
        }
    }
}

struct CrossConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "xconnect", abstract: "Add or delete a P2P cross-connect at runtime.",
                                                    subcommands: [Add.self, Delete.self])
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cross-connect interfaces A and B.")
        @Argument var name: String
        @Argument var a: String
        @Argument var b: String
        @OptionGroup var conn: Connection
        func run() throws {
            let resp = try conn.send(.init(command: .addCrossConnect, crossConnect: .init(name: name, a: a, b: b)))
            print(resp.summary.map(\.description) ?? "ok")
        }
    }
    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete a cross-connect.")
        @Argument var name: String
        @OptionGroup var conn: Connection
        func run() throws {
            let resp = try conn.send(.init(command: .deleteCrossConnect, name: name))
            print(resp.summary.map(\.description) ?? "ok")
        }
    }
}

struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect interfaces; hint labels pick the mode (NSM style).",
        discussion: "No label: p2p (two members). --label p2mp=replicate: the first member is the ingress. --label p2mp=bridge: an L2 bridge domain. Repeating it with other members changes them in place.")
    @Argument var name: String
    @Argument(help: "Member interfaces.") var members: [String]
    @Option(name: .customLong("label"), help: "A hint label key=value, e.g. p2mp=bridge.") var labels: [String] = []
    @OptionGroup var conn: Connection
    func run() throws {
        var hints: [String: String] = [:]
        for l in labels {
            let p = l.split(separator: "=", maxSplits: 1)
            guard p.count == 2 else { throw ValidationError("label '\(l)' is not key=value") }
            hints[String(p[0])] = String(p[1])
        }
        let resp = try conn.send(.init(command: .connect, name: name, members: members, labels: hints))
        print(resp.summary.map(\.description) ?? "ok")
    }
}

struct Disconnect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a cross-connect, replication group or bridge domain.")
    @Argument var name: String
    @OptionGroup var conn: Connection
    func run() throws {
        let resp = try conn.send(.init(command: .disconnect, name: name))
        print(resp.summary.map(\.description) ?? "ok")
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Re-read weftd's configuration file and apply only the difference.")
    @OptionGroup var conn: Connection
    func run() throws {
        let resp = try conn.send(.init(command: .reload))
        print(resp.summary.map(\.description) ?? "ok")
    }
}

/// Two readings `interval` apart, as rates.
struct LiveRates {
    let conn: Connection
    let what: Show.What

    struct Reading {
        var at = Date()
        var interfaces: [InterfaceStatus] = [], crossConnects: [CrossConnectStatus] = [], workers: [WorkerStats] = []
    }
    struct Result {
        var seconds: Double
        var interfaces: [InterfaceRate]?, crossConnects: [CrossConnectRate]?, workers: [WorkerRate]?
        var table: String {
            [interfaces.map { Render.interfaceRates($0, seconds: seconds) }, crossConnects.map { Render.crossConnectRates($0, seconds: seconds) },
             workers.map { Render.workerRates($0, seconds: seconds) }].compactMap { $0 }.joined(separator: "\n\n")
        }
        func printJSON() throws {
            struct Out: Encodable { var seconds: Double; var interfaces: [InterfaceRate]?; var crossConnects: [CrossConnectRate]?; var workers: [WorkerRate]? }
            try weftctl.printJSON(Out(seconds: seconds, interfaces: interfaces, crossConnects: crossConnects, workers: workers))
        }
    }

    func read() throws -> Reading {
        var r = Reading()
        switch what {
        case .interfaces: r.interfaces = try conn.send(.init(command: .showInterfaces)).interfaces ?? []
        case .xconnects: r.crossConnects = try conn.send(.init(command: .showCrossConnects)).crossConnects ?? []
        case .workers: r.workers = try conn.send(.init(command: .showWorkers)).workers ?? []
        default:
            r.interfaces = try conn.send(.init(command: .showInterfaces)).interfaces ?? []
            r.crossConnects = try conn.send(.init(command: .showCrossConnects)).crossConnects ?? []
            r.workers = try conn.send(.init(command: .showWorkers)).workers ?? []
        }
        r.at = Date()
        return r
    }

    func rates(_ a: Reading, _ b: Reading) -> Result {
        let secs = max(b.at.timeIntervalSince(a.at), 0.001)
        var out = Result(seconds: secs)
        if what == .interfaces || what == .counters { out.interfaces = Rates.interfaces(a.interfaces, b.interfaces, seconds: secs) }
        if what == .xconnects || what == .counters { out.crossConnects = Rates.crossConnects(a.crossConnects, b.crossConnects, seconds: secs) }
        if what == .workers || what == .counters { out.workers = Rates.workers(a.workers, b.workers, seconds: secs) }
        return out
    }

    func measure(interval: Double) throws -> Result {
        let a = try read()
        Thread.sleep(forTimeInterval: interval)
        return rates(a, try read())
    }
}

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Refresh a table of live rates in the terminal (Ctrl-C ends it).",
        discussion: "weftctl watch            interfaces, cross-connects and workers\nweftctl watch interfaces --interval 2")
    enum What: String, ExpressibleByArgument { case all, interfaces, xconnects, workers }
    @Argument(help: "all | interfaces | xconnects | workers") var what: What = .all
    @Option(help: "Seconds between refreshes.") var interval: Double = 1
    @Option(help: "Stop after this many refreshes (0: until interrupted).") var count: Int = 0
    @OptionGroup var conn: Connection

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval must be in [0.1, 3600] seconds") }
        guard count >= 0 else { throw ValidationError("--count must be 0 or more") }
    }

    func run() throws {
        let live = LiveRates(conn: conn, what: [.all: .counters, .interfaces: .interfaces, .xconnects: .xconnects, .workers: .workers][what]!)
        let tty = isatty(STDOUT_FILENO) == 1
        var last = try live.read()
        var n = 0
        while count == 0 || n < count {
            Thread.sleep(forTimeInterval: interval)
            let now = try live.read()
            let r = live.rates(last, now)
            last = now
            n += 1
            let stamp = ISO8601DateFormatter().string(from: now.at)
            // A terminal gets the table redrawn in place; a pipe gets one table after another.
            print((tty ? "\u{1B}[H\u{1B}[2J" : "") + "weftd \(conn.socket) at \(stamp)\n\n" + r.table + (tty ? "" : "\n"))
            fflush(stdout)
        }
    }
}

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Packet trace: what happened to each of the next frames, stage by stage (as VPP's trace).",
        discussion: """
        weftctl trace start --interface pod-a --count 5
        weftctl trace show
        weftctl trace clear
        Each traced frame is forwarded on its own; its lines give the cycles since it was received.
        """,
        subcommands: [Start.self, Show.self, Stop.self, Clear.self])

    static func render(_ t: TraceStatus) -> String {
        var out = "trace: \(t.armed ? "on" : "off")\(t.interface.map { ", interface \($0)" } ?? ", every interface"), \(t.left) frames still to trace, \(t.frames.count) traced"
        for f in t.frames {
            out += "\n\nframe \(f.id) (worker \(f.worker), TSC \(f.rxTSC))"
            for l in f.lines { out += "\n  " + l }
        }
        return out
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Trace the next frames (kept until cleared).")
        @Option(help: "Only frames received on this interface (a vlan or vxlan interface: its uplink).") var interface: String?
        @Option(help: "How many frames (1-1024).") var count: Int = 10
        @OptionGroup var conn: Connection
        func validate() throws { guard (1...1024).contains(count) else { throw ValidationError("--count must be 1..1024") } }
        func run() throws {
            let r = try conn.send(.init(command: .traceStart, name: interface, count: count))
            print("tracing the next \(r.trace?.left ?? 0) frames\(interface.map { " received on \($0)" } ?? ""); weftctl trace show")
        }
    }
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the traced frames.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var conn: Connection
        func run() throws {
            let t = try conn.send(.init(command: .traceShow)).trace ?? TraceStatus(armed: false, left: 0, interface: nil, frames: [])
            json ? try printJSON(t) : print(Trace.render(t))
        }
    }
    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop tracing; what was traced stays.")
        @OptionGroup var conn: Connection
        func run() throws { _ = try conn.send(.init(command: .traceStop)); print("trace stopped") }
    }
    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop tracing and forget the traced frames.")
        @OptionGroup var conn: Connection
        func run() throws { _ = try conn.send(.init(command: .traceClear)); print("trace cleared") }
    }
}

struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Capture an interface's frames into a pcapng file (tcpdump -r, Wireshark).",
        discussion: """
        weftctl capture start --interface pod-a -w /tmp/pod-a.pcapng --count 100 --filter icmp --wait
        weftctl capture status
        weftctl capture stop
        Workers copy frames into free slots and never wait: when none is free the copy (not the frame) is
        dropped and counted. A VLAN or VXLAN interface is captured on its uplink.
        """,
        subcommands: [Start.self, Stop.self, Status.self])

    static func render(_ s: CaptureStatus) -> String {
        "capture of \(s.interface) (\(s.direction)) to \(s.path): \(s.running ? "running" : "done"); \(s.written) frames written, "
            + "\(s.filtered) left out by the filter, \(s.dropped) copies dropped (no free slot), \(s.copied) copied"
            + (s.error.map { "; error: \($0)" } ?? "")
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a capture (one at a time).")
        @Option(help: "The interface.") var interface: String
        @Option(name: .customShort("w"), help: "The pcapng file to create (not overwritten if it exists).") var file: String
        @Option(help: "rx, tx or both.") var direction: String = "both"
        @Option(help: "Stop after this many frames written (0: no limit).") var count: Int = 0
        @Option(help: "Stop after this many seconds (0: no limit).") var duration: Int = 0
        @Option(help: "A BPF filter in tcpdump's syntax, e.g. 'icmp or arp'.") var filter: String = ""
        @Option(help: "Bytes kept of each frame (64-65535).") var snaplen: Int = 9216
        @Option(help: "Copies in flight between the workers and the writer (16-65536).") var slots: Int = 4096
        @Flag(help: "Wait until the capture ends (count or duration reached) and print its figures.") var wait = false
        @OptionGroup var conn: Connection
        func validate() throws {
            guard ["rx", "tx", "both"].contains(direction) else { throw ValidationError("--direction must be rx, tx or both") }
            guard count >= 0, duration >= 0 else { throw ValidationError("--count and --duration must be 0 or more") }
            if wait && count == 0 && duration == 0 { throw ValidationError("--wait needs --count or --duration") }
        }
        func run() throws {
            let path = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
            let req = CaptureRequest(interface: interface, direction: direction, path: path, count: count, seconds: duration,
                                     filter: filter, snaplen: snaplen, slots: slots)
            var s = try conn.send(.init(command: .captureStart, capture: req)).captureStatus
            guard wait else { print("capturing \(interface) (\(direction)) to \(path); weftctl capture status|stop"); return }
            while s?.running == true {
                Thread.sleep(forTimeInterval: 0.2)
                s = try conn.send(.init(command: .captureStatus)).captureStatus
            }
            if let s { print(Capture.render(s)) }
        }
    }
    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the capture and close its file.")
        @OptionGroup var conn: Connection
        func run() throws { if let s = try conn.send(.init(command: .captureStop)).captureStatus { print(Capture.render(s)) } }
    }
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The current or last capture's figures.")
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var conn: Connection
        func run() throws {
            guard let s = try conn.send(.init(command: .captureStatus)).captureStatus else { return }
            json ? try printJSON(s) : print(Capture.render(s))
        }
    }
}
