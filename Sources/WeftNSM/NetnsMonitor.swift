import Foundation
import Logging
import Synchronization
import WeftKernel

/// Closes connections whose client pod has gone (as NSM's forwarders do), scanning
/// every `interval`:
///  - a namespace given by a path of its own (/proc/<pid>/ns/net, /var/run/netns/<name>)
///    is gone when that path no longer names it (the process exited, the name was
///    removed) in two scans in a row;
///  - a namespace Weft holds by an fd (grpcfd) stays alive while Weft holds it, so its
///    pod is gone when no process is in it any more: once seen with a process in
///    `settle` scans in a row (a pod's pause container is there all along; a command
///    run for a moment is not), it is gone after two scans without one. weftd
///    without hostPID never sees the pods' processes, so it never closes these.
final class NetnsMonitor: Sendable {
    struct Key: Hashable { var dev: UInt64; var ino: UInt64 }
    private struct Watch { var seenRun = 0; var settled = false; var missed = 0 }
    /// Scans in a row with a process before the namespace counts as a pod's.
    let settle = 3
    private let state = Mutex<[String: Watch]>([:])
    let forwarder: Forwarder
    let logger: Logger
    let interval: Duration
    let procRoot: String

    init(forwarder: Forwarder, logger: Logger, interval: Duration = .seconds(2), procRoot: String = "/proc") {
        self.forwarder = forwarder
        self.logger = logger
        self.interval = interval
        self.procRoot = procRoot
    }

    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            await scan()
        }
    }

    /// The namespaces that have a process in them.
    func liveNamespaces() -> Set<Key> {
        var out = Set<Key>()
        guard let d = opendir(procRoot) else { return out }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard let f = name.utf8.first, f >= 48, f <= 57 else { continue }
            var st = stat()
            if stat("\(procRoot)/\(name)/ns/net", &st) == 0 { out.insert(Key(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))) }
        }
        return out
    }

    /// One pass; returns the ids it closed.
    @discardableResult
    func scan() async -> [String] {
        let live = liveNamespaces()
        var watched: [String: (key: Key?, held: Bool)] = [:]
        // The fds of namespaces no connection names any more go.
        var inUse = Set<InodeURL>()
        for st in forwarder.table.all {
            for u in [st.serverMechanism.parameters[Mech.inodeURL], st.nextHop.mechanism.parameters[Mech.inodeURL]] {
                if let u, let i = InodeURL(u) { inUse.insert(i) }
            }
        }
        ReceivedFiles.shared.sweep(inUse: inUse)
        for st in forwarder.table.all {
            guard let s = st.server, s.type == Mech.kernel, let ns = s.netns else { continue }
            watched[st.id] = (NetNS.identity(ns).map { Key(dev: $0.dev, ino: $0.ino) }, ns.hasPrefix("/proc/self/fd/"))
        }
        let gone: [String] = state.withLock { w in
            w = w.filter { watched[$0.key] != nil }
            var out: [String] = []
            for (id, v) in watched {
                var x = w[id] ?? Watch()
                if !v.held {
                    // Its own path: gone when the path no longer names a namespace.
                    if v.key == nil { x.missed += 1 } else { x.missed = 0 }
                } else if let key = v.key, live.contains(key) {
                    x.seenRun += 1
                    if x.seenRun >= settle { x.settled = true }
                    x.missed = 0
                } else {
                    x.seenRun = 0
                    if x.settled { x.missed += 1 }
                }
                if x.missed >= 2 { out.append(id); w[id] = nil } else { w[id] = x }
            }
            return out
        }
        for id in gone {
            logger.notice("connection \(id): the client pod's network namespace has no process left; closing it")
            await forwarder.close(id: id, reason: .netnsGone)
        }
        return gone
    }
}
