import Foundation
import WeftNSMProto

/// NSM's path rules (reference §2.5): each hop owns one segment; the connection id a hop
/// sees is its own segment's id.
public enum PathOps {
    public struct Error: Swift.Error, CustomStringConvertible { public var description: String }

    /// Update `path` for the hop `name`, as a server receiving a Request does. Returns the
    /// index of the previous hop (the caller), whose view is restored on the way back.
    ///  - empty path: one segment, ours, index 0;
    ///  - the segment at `index` is ours already (a hop re-entered): keep it;
    ///  - otherwise step to index + 1: reuse that segment if it bears our name (a refresh or
    ///    heal), else replace it (or append one) with a fresh id.
    /// As NSM's updatepath: on an empty path a given `connectionID` becomes our segment's
    /// id; when stepping, the caller's segment must bear the connection's id (`nil`: not
    /// checked, for callers that only have a path).
    public static func update(_ path: inout Connection_Path, name: String, connectionID: String? = nil,
                              newID: () -> String) throws -> UInt32 {
        if path.pathSegments.isEmpty {
            var seg = Connection_PathSegment()
            seg.name = name
            seg.id = (connectionID?.isEmpty == false) ? connectionID! : newID()
            path.pathSegments = [seg]
            path.index = 0
            return 0
        }
        guard Int(path.index) < path.pathSegments.count else {
            throw Error(description: "path.index \(path.index) is past the last of \(path.pathSegments.count) path segments")
        }
        if path.pathSegments[Int(path.index)].name == name {
            return path.index
        }
        if let connectionID, path.pathSegments[Int(path.index)].id != connectionID {
            throw Error(description: "connection.id '\(connectionID)' is not the id of path segment \(path.index) ('\(path.pathSegments[Int(path.index)].id)')")
        }
        let prev = path.index
        path.index += 1
        let i = Int(path.index)
        if i >= path.pathSegments.count {
            var seg = Connection_PathSegment()
            seg.name = name
            seg.id = newID()
            path.pathSegments.append(seg)
        } else if path.pathSegments[i].name != name {
            path.pathSegments[i].name = name
            path.pathSegments[i].id = newID()
        } else if path.pathSegments[i].id.isEmpty {
            path.pathSegments[i].id = newID()
        }
        return prev
    }

    /// MonitorConnections scope: an empty selector matches everything; otherwise its
    /// segments appear as a contiguous run in the connection's path (empty fields are
    /// wildcards), and if network_services is set the service is among them.
    public static func matches(_ sel: Connection_MonitorScopeSelector, _ c: Connection_Connection) -> Bool {
        if !sel.networkServices.isEmpty && !sel.networkServices.contains(c.networkService) { return false }
        let want = sel.pathSegments
        if want.isEmpty { return true }
        let have = c.path.pathSegments
        guard want.count <= have.count else { return false }
        func same(_ w: Connection_PathSegment, _ h: Connection_PathSegment) -> Bool {
            (w.name.isEmpty || w.name == h.name) && (w.id.isEmpty || w.id == h.id) && (w.token.isEmpty || w.token == h.token)
        }
        for start in 0...(have.count - want.count) {
            if zip(want, have[start...]).allSatisfy(same) { return true }
        }
        return false
    }

    /// `selector` ⊆ `labels`. Values may be Go templates over the connection labels
    /// (`{{ .podName }}`); the simple `{{ .key }}` form is expanded.
    public static func isSubset(_ labels: [String: String], _ selector: [String: String], connection: [String: String]) -> Bool {
        selector.allSatisfy { k, v in labels[k] == expand(v, connection) }
    }

    static func expand(_ v: String, _ labels: [String: String]) -> String {
        guard v.contains("{{") else { return v }
        var out = v
        while let open = out.range(of: "{{"), let close = out.range(of: "}}", range: open.upperBound..<out.endIndex) {
            let key = out[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            let name = key.hasPrefix(".") ? String(key.dropFirst()) : key
            out.replaceSubrange(open.lowerBound..<close.upperBound, with: labels[name] ?? "")
        }
        return out
    }

    /// The endpoints a request may go to (NSM's MatchEndpoint, reference §5): the first
    /// Match whose source selector the connection labels satisfy decides; its routes'
    /// destination selectors pick endpoints; `fallthrough` moves on when none qualified;
    /// a Match with metadata and no routes allows all. No matches at all: every endpoint.
    public static func matchEndpoints(labels: [String: String], service: Registry_NetworkService,
                                      endpoints: [Registry_NetworkServiceEndpoint]) -> [Registry_NetworkServiceEndpoint] {
        if service.matches.isEmpty { return endpoints }
        for m in service.matches {
            guard isSubset(labels, m.sourceSelector, connection: labels) else { continue }
            var out: [Registry_NetworkServiceEndpoint] = []
            for r in m.routes {
                for e in endpoints where !out.contains(where: { $0.name == e.name }) {
                    let el = e.networkServiceLabels[service.name]?.labels ?? [:]
                    if isSubset(el, r.destinationSelector, connection: labels) { out.append(e) }
                }
            }
            if m.fallthrough && out.isEmpty { continue }
            if m.hasMetadata && m.routes.isEmpty { return endpoints }
            return out
        }
        return []
    }
}
