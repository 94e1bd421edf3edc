import Foundation
import WeftDataplane
import WeftMetrics
import WeftModel

// The dataplane's figures as Prometheus families, read at scrape time from
// the same snapshots `weftctl` shows: the C core's per-worker counters are
// read without a lock the workers take, so a scrape never slows them.
//
// Conventions: `weft_` prefix, `_total` for counters, bytes and seconds as
// units; an interface's bytes are its frames as the wire carries them (a
// tunnel side counts the inner frames, its uplink the encapsulated ones).

extension ControlPlane {
    public func metricFamilies() -> [MetricFamily] {
        guard !isShutDown else { return [] }
        let ifs = interfaceStatus()
        var f: [MetricFamily] = []
        func ifLabels(_ i: InterfaceStatus) -> [(String, String)] { [("interface", i.name), ("type", i.type)] }

        f.append(.init("weft_interface_rx_packets_total", .counter, "Frames received on an interface.",
                       ifs.map { Sample(ifLabels($0), $0.counters.rxPackets) }))
        f.append(.init("weft_interface_rx_bytes_total", .counter, "Bytes received on an interface (frames without FCS).",
                       ifs.map { Sample(ifLabels($0), $0.counters.rxBytes) }))
        f.append(.init("weft_interface_tx_packets_total", .counter, "Frames sent on an interface.",
                       ifs.map { Sample(ifLabels($0), $0.counters.txPackets) }))
        f.append(.init("weft_interface_tx_bytes_total", .counter, "Bytes sent on an interface (frames without FCS).",
                       ifs.map { Sample(ifLabels($0), $0.counters.txBytes) }))
        f.append(.init("weft_interface_drops_total", .counter, "Frames an interface dropped, by reason (see weft_drops_total).",
                       ifs.flatMap { i in i.counters.drops.sorted { $0.key < $1.key }.map { Sample([("interface", i.name), ("reason", $0.key)], $0.value) } }))
        f.append(.init("weft_interface_up", .gauge, "1 when the interface's link is up (tunnel sides: their uplink's).",
                       ifs.map { Sample(ifLabels($0), $0.link == "up" ? 1.0 : 0.0) }))
        f.append(.init("weft_interface_mtu_bytes", .gauge, "The interface's MTU.", ifs.map { Sample(ifLabels($0), Double($0.mtu)) }))
        f.append(.init("weft_interface_info", .gauge, "An interface's backend, driver and cross-connect (value 1).",
                       ifs.map { Sample([("interface", $0.name), ("type", $0.type), ("backend", $0.backend), ("driver", $0.driver),
                                         ("cross_connect", $0.crossConnect ?? "")], 1.0) }))
        f.append(.init("weft_interface_offload", .gauge, "A TX offload in use on an interface (value 1).",
                       ifs.flatMap { i in i.offloads.map { Sample([("interface", i.name), ("offload", $0)], 1.0) } }))
        let memifs = ifs.compactMap { i in i.memif.map { (i.name, $0) } }
        f.append(.init("weft_memif_connected", .gauge, "1 when a memif interface has a connected peer.",
                       memifs.map { Sample([("interface", $0.0)], $0.1.connected ? 1.0 : 0.0) }))
        f.append(.init("weft_memif_events_total", .counter, "memif control-channel events, by what happened.",
                       memifs.flatMap { m in m.1.events.sorted { $0.key < $1.key }.map { Sample([("interface", m.0), ("event", $0.key)], $0.value) } }))

        let xcs = crossConnectStatus()
        func dir(_ x: CrossConnectStatus) -> [(String, CrossConnectCounters.Direction)] { [("a_to_b", x.counters.aToB), ("b_to_a", x.counters.bToA)] }
        f.append(.init("weft_xconnect_packets_total", .counter, "Frames a cross-connect forwarded, by direction.",
                       xcs.flatMap { x in dir(x).map { Sample([("xconnect", x.name), ("direction", $0.0)], $0.1.packets) } }))
        f.append(.init("weft_xconnect_bytes_total", .counter, "Bytes of the frames a cross-connect forwarded (as received), by direction.",
                       xcs.flatMap { x in dir(x).map { Sample([("xconnect", x.name), ("direction", $0.0)], $0.1.bytes) } }))
        f.append(.init("weft_xconnect_drops_total", .counter, "Frames a cross-connect dropped, by direction.",
                       xcs.flatMap { x in dir(x).map { Sample([("xconnect", x.name), ("direction", $0.0)], $0.1.drops) } }))

        let groups = p2mpStatus()
        var mp: [Sample] = [], mb: [Sample] = [], md: [Sample] = []
        for g in groups {
            for m in g.members {
                for (d, c) in [("to_member", m.toMember), ("from_member", m.fromMember)] {
                    let l = [("group", g.name), ("mode", g.mode), ("member", m.interface), ("direction", d)]
                    mp.append(Sample(l, c.packets)); mb.append(Sample(l, c.bytes)); md.append(Sample(l, c.drops))
                }
            }
        }
        f.append(.init("weft_p2mp_member_packets_total", .counter, "Frames to and from a replication group's or bridge domain's member.", mp))
        f.append(.init("weft_p2mp_member_bytes_total", .counter, "Bytes to and from a replication group's or bridge domain's member.", mb))
        f.append(.init("weft_p2mp_member_drops_total", .counter, "Frames dropped to and from a member.", md))
        let bridges = groups.compactMap { g in g.stats.map { (g, $0) } }
        f.append(.init("weft_bridge_macs", .gauge, "MAC addresses a bridge domain knows now (learned and static).",
                       bridges.map { Sample([("bridge", $0.0.name)], Double($0.0.macs?.count ?? 0)) }))
        f.append(.init("weft_bridge_learned_total", .counter, "MAC addresses a bridge domain learned.",
                       bridges.map { Sample([("bridge", $0.0.name)], $0.1.learned) }))
        f.append(.init("weft_bridge_moves_total", .counter, "MAC addresses that moved to another member.",
                       bridges.map { Sample([("bridge", $0.0.name)], $0.1.moves) }))
        f.append(.init("weft_bridge_flooded_total", .counter, "Frames a bridge domain flooded (unknown unicast, broadcast, multicast).",
                       bridges.map { Sample([("bridge", $0.0.name)], $0.1.flooded) }))
        f.append(.init("weft_bridge_mac_limit_drops_total", .counter, "MAC addresses not learned because the domain's mac_limit was reached.",
                       bridges.map { Sample([("bridge", $0.0.name)], $0.1.limitDrops) }))

        let drops = dropStatus()
        f.append(.init("weft_drops_total", .counter, "Frames the node dropped, by reason and the stage that drops for it.",
                       drops.map { Sample([("reason", $0.reason), ("stage", $0.stage)], $0.count) }))

        let workers = workerStatus()
        func wl(_ w: WorkerStats) -> [(String, String)] { [("worker", String(w.worker)), ("lcore", String(w.lcore))] }
        f.append(.init("weft_worker_busy_cycles_total", .counter, "TSC cycles a worker spent in iterations that received frames.",
                       workers.map { Sample(wl($0), $0.busyCycles) }))
        f.append(.init("weft_worker_idle_cycles_total", .counter, "TSC cycles a worker spent in iterations that received nothing.",
                       workers.map { Sample(wl($0), $0.idleCycles) }))
        f.append(.init("weft_worker_busy_iterations_total", .counter, "Poll iterations that received frames.",
                       workers.map { Sample(wl($0), $0.busyIterations) }))
        f.append(.init("weft_worker_idle_iterations_total", .counter, "Poll iterations that received nothing.",
                       workers.map { Sample(wl($0), $0.idleIterations) }))
        f.append(.init("weft_worker_rx_packets_total", .counter, "Frames a worker received.", workers.map { Sample(wl($0), $0.rxPackets) }))
        f.append(.init("weft_worker_queues", .gauge, "RX queues assigned to a worker.", workers.map { Sample(wl($0), Double($0.queues)) }))
        f.append(.init("weft_worker_active_queues", .gauge, "Of those, the queues polled now (idle pod queues wait for an event).",
                       workers.map { Sample(wl($0), Double($0.activeQueues)) }))
        f.append(.init("weft_tsc_hz", .gauge, "TSC frequency: divides the cycle counters into seconds.", [Sample([], Double(EAL.tscHz))]))

        let r = running
        f.append(.init("weft_table_objects", .gauge, "Objects in the running configuration, by kind.", [
            Sample([("kind", "interface")], Double(r.interfaces.count)),
            Sample([("kind", "cross_connect")], Double(r.crossConnects.count)),
            Sample([("kind", "replication_group")], Double(r.replicationGroups.count)),
            Sample([("kind", "bridge_domain")], Double(r.bridgeDomains.count)),
        ]))
        if let t = controller.dataplane.publishStats() {
            f.append(.init("weft_table_publishes_total", .counter, "Forwarding tables published to the workers.", [Sample([], t.publishes)]))
            f.append(.init("weft_table_publish_bytes_total", .counter, "Bytes written into new table parts, over all publishes.",
                           [Sample([], t.totalBytes)]))
            f.append(.init("weft_table_last_publish_bytes", .gauge, "Bytes written into the last published table's new parts.",
                           [Sample([], t.lastBytes)]))
        }
        f.append(.init("weft_control_change_duration_seconds", .histogram,
                       "How long each configuration change took: validation, kernel plumbing and the table publish.",
                       changeSeconds.samples()))

        let nbrs = neighbourStatus()
        let states = ["incomplete", "reachable", "static", "failed"]
        var byState: [String: Int] = Dictionary(uniqueKeysWithValues: states.map { ($0, 0) })
        for n in nbrs { byState[n.state, default: 0] += 1 }
        f.append(.init("weft_neighbours", .gauge, "Underlay next hops (VXLAN remotes and gateways), by resolution state.",
                       byState.sorted { $0.key < $1.key }.map { Sample([("state", $0.key)], Double($0.value)) }))
        f.append(.init("weft_limit", .gauge, "A configured bound on what callers can make Weft allocate.", [
            Sample([("limit", "neighbours")], Double(Dataplane.maxNeighbours)),
            Sample([("limit", "dataplane.punt_rate")], Double(r.dataplane.puntRate)),
        ]))
        return f
    }
}
