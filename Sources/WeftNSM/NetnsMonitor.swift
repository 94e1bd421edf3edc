import Foundation
import Logging
import Synchronization
import WeftKernel

/// Closes connections whose client pod has gone (as NSM's forwarders do): every
/// `interval`, the network namespaces any process is in are read from /proc; a
/// connection whose caller-side (KERNEL) namespace was seen with a process before and
/// has none in two scans in a row is closed everywhere. A namespace never seen with a
/// process (weftd without hostPID cannot see the pods' processes) is left alone.
final class NetnsMonitor: Sendable {
    struct Key: Hashable { var dev: UInt64; var ino: UInt64 }
    private struct Watch { var seen = false; var missed = 0 }
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
        var watched: [String: Key?] = [:]
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
            watched[st.id] = NetNS.identity(ns).map { Key(dev: $0.dev, ino: $0.ino) }
        }
        let gone: [String] = state.withLock { w in
            w = w.filter { watched[$0.key] != nil }
            var out: [String] = []
            for (id, key) in watched {
                var x = w[id] ?? Watch()
                if let key, live.contains(key) { x.seen = true; x.missed = 0 } else if x.seen { x.missed += 1 }
                if x.seen && x.missed >= 2 { out.append(id); w[id] = nil } else { w[id] = x }
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
