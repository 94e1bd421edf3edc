import Foundation
import Yams

// The configuration model: YAML -> Codable (unknown keys rejected) ->
// validated, immutable model. Every error names the file, the line and the
// key. The same types travel as JSON between weftctl and weftd, so a runtime
// change is checked by the same code as the file.

public struct WeftConfig: Codable, Equatable, Sendable {
    public var eal: EALConfig
    public var dataplane: DataplaneConfig
    public var admin: AdminConfig
    public var interfaces: [InterfaceConfig]
    public var crossConnects: [CrossConnectConfig]
    /// NSM-style device selector: maps a VLAN `via` label to an uplink NIC.
    public var deviceSelectorFile: String?
    /// The node's VXLAN UDP port (NSM_VXLAN_PORT overrides), default 4789.
    public var vxlanPort: Int = 4789
    public var replicationGroups: [ReplicationGroupConfig] = []
    public var bridgeDomains: [BridgeDomainConfig] = []
    /// Capability labels this node advertises (NSM_LABELS "k=v,k2=v2" adds and overrides).
    public var labels: [String: String] = Capabilities.defaultLabels
    /// Weft as an NSM forwarder (served when this section is present or NSM_LISTEN_ON is set).
    public var nsm: NSMFileConfig?
    /// Prometheus /metrics (NSM_PROMETHEUS, NSM_PROMETHEUS_LISTEN_ON override).
    public var metrics: MetricsConfig = .init()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case nsm, metrics
        case eal, dataplane, admin, interfaces
        case crossConnects = "cross_connects"
        case deviceSelectorFile = "device_selector_file"
        case vxlanPort = "vxlan_port"
        case replicationGroups = "replication_groups"
        case bridgeDomains = "bridge_domains"
        case labels
    }

    public init(eal: EALConfig = .init(), dataplane: DataplaneConfig = .init(), admin: AdminConfig = .init(),
                interfaces: [InterfaceConfig] = [], crossConnects: [CrossConnectConfig] = [], deviceSelectorFile: String? = nil) {
        self.eal = eal; self.dataplane = dataplane; self.admin = admin
        self.interfaces = interfaces; self.crossConnects = crossConnects; self.deviceSelectorFile = deviceSelectorFile
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        eal = try c.decodeIfPresent(EALConfig.self, forKey: .eal) ?? .init()
        dataplane = try c.decodeIfPresent(DataplaneConfig.self, forKey: .dataplane) ?? .init()
        admin = try c.decodeIfPresent(AdminConfig.self, forKey: .admin) ?? .init()
        interfaces = try c.decodeIfPresent([InterfaceConfig].self, forKey: .interfaces) ?? []
        crossConnects = try c.decodeIfPresent([CrossConnectConfig].self, forKey: .crossConnects) ?? []
        deviceSelectorFile = try c.decodeIfPresent(String.self, forKey: .deviceSelectorFile)
        vxlanPort = try c.decodeIfPresent(Int.self, forKey: .vxlanPort) ?? 4789
        replicationGroups = try c.decodeIfPresent([ReplicationGroupConfig].self, forKey: .replicationGroups) ?? []
        bridgeDomains = try c.decodeIfPresent([BridgeDomainConfig].self, forKey: .bridgeDomains) ?? []
        labels = try c.decodeIfPresent([String: String].self, forKey: .labels) ?? Capabilities.defaultLabels
        nsm = try c.decodeIfPresent(NSMFileConfig.self, forKey: .nsm)
        metrics = try c.decodeIfPresent(MetricsConfig.self, forKey: .metrics) ?? .init()
    }
}

/// The `metrics:` section: Prometheus's /metrics over HTTP, off unless asked for
/// (as NSM's forwarders: NSM_PROMETHEUS=true, NSM_PROMETHEUS_LISTEN_ON=:8081).
public struct MetricsConfig: Codable, Equatable, Sendable {
    public var prometheus: Bool = false
    /// host:port, [v6]:port or :port (every address).
    public var listenOn: String = ":8081"
    /// NSM_PROMETHEUS when it is not a boolean (reported by the validator).
    public var badEnvironment: String? = nil

    enum CodingKeys: String, CodingKey, CaseIterable {
        case prometheus, listenOn = "listen_on"
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        prometheus = try c.decodeIfPresent(Bool.self, forKey: .prometheus) ?? prometheus
        listenOn = try c.decodeIfPresent(String.self, forKey: .listenOn) ?? listenOn
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prometheus, forKey: .prometheus)
        try c.encode(listenOn, forKey: .listenOn)
    }

    /// host and port of `listen_on`; nil if it is not [host]:port with a port in 1...65535.
    public static func parseListen(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        var host = String(s[..<colon])
        guard let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard IPAddress.parse(host)?.count == 16 else { return nil }
        } else if !host.isEmpty {
            guard host == "localhost" || IPAddress.parse(host)?.count == 4 else { return nil }
        }
        return (host, port)
    }

    /// Go's strconv.ParseBool, as NSM's env config reads booleans.
    public static func parseBool(_ s: String) -> Bool? {
        switch s {
        case "1", "t", "T", "TRUE", "true", "True": return true
        case "0", "f", "F", "FALSE", "false", "False": return false
        default: return nil
        }
    }
}

/// The `nsm:` section. NSM's variables (NSM_NAME, NSM_NSNAME, NSM_LISTEN_ON, NSM_CONNECT_TO,
/// NSM_DIAL_TIMEOUT, NSM_MAX_TOKEN_LIFETIME, NSM_LOG_LEVEL, NSM_MECHANISM_PRIORITY) override it.
public struct NSMFileConfig: Codable, Equatable, Sendable {
    public var name: String?
    public var nsname: String?
    public var listenOn: [String]?
    public var connectTo: String?
    public var dialTimeout: String?
    public var maxTokenLifetime: String?
    public var logLevel: String?
    public var mechanismPriority: [String]?
    /// Register with the NSMgr (default true).
    public var register: Bool?
    /// Plaintext gRPC and no tokens (labs and tests only; default false: mutual TLS).
    public var insecure: Bool?
    /// The SPIFFE Workload API socket (SPIFFE_ENDPOINT_SOCKET overrides it).
    public var spiffeSocket: String?
    /// How long weftd waits at start for its first SVID (default 60s).
    public var svidTimeout: String?
    /// Bounds (defaults 8192, 1024, 256).
    public var maxConnections: Int?
    public var maxConnectionsPerClient: Int?
    public var maxMonitorStreams: Int?
    /// OpenTelemetry: the OTLP/gRPC collector (host:port) and the metrics export interval
    /// (NSM_OPEN_TELEMETRY_ENDPOINT and NSM_METRICS_EXPORT_INTERVAL override them).
    public var openTelemetryEndpoint: String?
    public var metricsExportInterval: String?
    /// SR-IOV: NSM's config file of physical functions (NSM_SRIOV_CONFIG_FILE) and where
    /// sysfs lists PCI devices (NSM_PCI_DEVICES_PATH, default /sys/bus/pci/devices).
    public var sriovConfigFile: String?
    public var pciDevicesPath: String?
    /// VFIO: where the VFIO group devices are (NSM_VFIO_PATH, default /dev/vfio) and the
    /// cgroup v1 devices hierarchy pods' `cgroupDir` is under (NSM_CGROUP_PATH, default
    /// /sys/fs/cgroup/devices).
    public var vfioPath: String?
    public var cgroupPath: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case sriovConfigFile = "sriov_config_file", pciDevicesPath = "pci_devices_path", vfioPath = "vfio_path", cgroupPath = "cgroup_path"
        case name, nsname, listenOn = "listen_on", connectTo = "connect_to", dialTimeout = "dial_timeout"
        case maxTokenLifetime = "max_token_lifetime", logLevel = "log_level", mechanismPriority = "mechanism_priority", register
        case insecure, spiffeSocket = "spiffe_socket", svidTimeout = "svid_timeout"
        case maxConnections = "max_connections", maxConnectionsPerClient = "max_connections_per_client"
        case maxMonitorStreams = "max_monitor_streams"
        case openTelemetryEndpoint = "open_telemetry_endpoint", metricsExportInterval = "metrics_export_interval"
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        nsname = try c.decodeIfPresent(String.self, forKey: .nsname)
        listenOn = try c.decodeIfPresent([String].self, forKey: .listenOn)
        connectTo = try c.decodeIfPresent(String.self, forKey: .connectTo)
        dialTimeout = try c.decodeIfPresent(String.self, forKey: .dialTimeout)
        maxTokenLifetime = try c.decodeIfPresent(String.self, forKey: .maxTokenLifetime)
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel)
        mechanismPriority = try c.decodeIfPresent([String].self, forKey: .mechanismPriority)
        register = try c.decodeIfPresent(Bool.self, forKey: .register)
        insecure = try c.decodeIfPresent(Bool.self, forKey: .insecure)
        spiffeSocket = try c.decodeIfPresent(String.self, forKey: .spiffeSocket)
        svidTimeout = try c.decodeIfPresent(String.self, forKey: .svidTimeout)
        maxConnections = try c.decodeIfPresent(Int.self, forKey: .maxConnections)
        maxConnectionsPerClient = try c.decodeIfPresent(Int.self, forKey: .maxConnectionsPerClient)
        maxMonitorStreams = try c.decodeIfPresent(Int.self, forKey: .maxMonitorStreams)
        openTelemetryEndpoint = try c.decodeIfPresent(String.self, forKey: .openTelemetryEndpoint)
        metricsExportInterval = try c.decodeIfPresent(String.self, forKey: .metricsExportInterval)
        sriovConfigFile = try c.decodeIfPresent(String.self, forKey: .sriovConfigFile)
        pciDevicesPath = try c.decodeIfPresent(String.self, forKey: .pciDevicesPath)
        vfioPath = try c.decodeIfPresent(String.self, forKey: .vfioPath)
        cgroupPath = try c.decodeIfPresent(String.self, forKey: .cgroupPath)
    }
}

public struct EALConfig: Codable, Equatable, Sendable {
    /// The control thread's lcore (EAL main lcore).
    public var mainLcore: Int = 0
    /// Use hugepages (reserved and mounted by scripts/install.sh); false runs EAL with --no-huge.
    public var hugepages: Bool = false
    /// Memory for EAL in MiB (-m).
    public var memoryMB: Int = 512
    /// Separates this process's DPDK runtime files from other DPDK processes.
    public var filePrefix: String = "weft"
    /// DPDK log level (--log-level), e.g. "notice" or "lib.eal:debug".
    public var logLevel: String = "notice"
    /// Extra EAL arguments, passed as given (e.g. ["-a", "0000:05:00.0"]).
    public var extraArgs: [String] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case mainLcore = "main_lcore", hugepages, memoryMB = "memory_mb", filePrefix = "file_prefix"
        case logLevel = "log_level", extraArgs = "extra_args"
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        mainLcore = try c.decodeIfPresent(Int.self, forKey: .mainLcore) ?? mainLcore
        hugepages = try c.decodeIfPresent(Bool.self, forKey: .hugepages) ?? hugepages
        memoryMB = try c.decodeIfPresent(Int.self, forKey: .memoryMB) ?? memoryMB
        filePrefix = try c.decodeIfPresent(String.self, forKey: .filePrefix) ?? filePrefix
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? logLevel
        extraArgs = try c.decodeIfPresent([String].self, forKey: .extraArgs) ?? extraArgs
    }
}

public struct DataplaneConfig: Codable, Equatable, Sendable {
    /// Worker lcores, one run-to-completion poll loop each.
    public var workers: [Int] = [1]
    public var burstSize: Int = 32
    public var rxDescriptors: Int = 1024
    public var txDescriptors: Int = 1024
    public var mbufs: Int = 16383
    public var mbufCache: Int = 256
    public var maxCrossConnects: Int = 4096
    /// Microseconds an idle worker sleeps after 1024 empty polls; 0 = pure busy polling.
    public var idleSleepUs: Int = 0
    /// A pod interface (memif, AF_PACKET, AF_XDP) queue that had nothing for 1,024
    /// polls waits for an event instead of being polled: a worker's cost does not
    /// grow with idle interfaces. false: every queue is polled always.
    public var queuesSleep: Bool = true
    /// ARP/ND/ICMP frames per second each worker hands the control plane; more are
    /// dropped (`punt-rate`), so a flood at an uplink cannot starve forwarding. 0: no limit.
    public var puntRate: Int = 10000
    /// P2P cross-connects switched by the NIC (rte_flow transfer rules on an eswitch):
    /// auto (when both sides allow; software otherwise, the reason shown), off, or
    /// required (a cross-connect that cannot be offloaded is refused).
    public var offload: OffloadSetting = .auto

    enum CodingKeys: String, CodingKey, CaseIterable {
        case workers, burstSize = "burst_size", rxDescriptors = "rx_descriptors"
        case txDescriptors = "tx_descriptors", mbufs, mbufCache = "mbuf_cache"
        case maxCrossConnects = "max_cross_connects", idleSleepUs = "idle_sleep_us"
        case queuesSleep = "queues_sleep", puntRate = "punt_rate", offload
    }
    public init() {}
    /// The defaults, for whoever builds dataplane settings without a file.
    public static let defaults = DataplaneConfig()
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        workers = try c.decodeIfPresent([Int].self, forKey: .workers) ?? workers
        burstSize = try c.decodeIfPresent(Int.self, forKey: .burstSize) ?? burstSize
        rxDescriptors = try c.decodeIfPresent(Int.self, forKey: .rxDescriptors) ?? rxDescriptors
        txDescriptors = try c.decodeIfPresent(Int.self, forKey: .txDescriptors) ?? txDescriptors
        mbufs = try c.decodeIfPresent(Int.self, forKey: .mbufs) ?? mbufs
        mbufCache = try c.decodeIfPresent(Int.self, forKey: .mbufCache) ?? mbufCache
        maxCrossConnects = try c.decodeIfPresent(Int.self, forKey: .maxCrossConnects) ?? maxCrossConnects
        idleSleepUs = try c.decodeIfPresent(Int.self, forKey: .idleSleepUs) ?? idleSleepUs
        queuesSleep = try c.decodeIfPresent(Bool.self, forKey: .queuesSleep) ?? queuesSleep
        puntRate = try c.decodeIfPresent(Int.self, forKey: .puntRate) ?? puntRate
        offload = try c.decodeIfPresent(OffloadSetting.self, forKey: .offload) ?? offload
    }
}

public enum OffloadSetting: String, Codable, Sendable, CaseIterable {
    case off, auto, required
}

public struct AdminConfig: Codable, Equatable, Sendable {
    /// weftctl talks to weftd here (mode 0600).
    public var socket: String = "/run/weft/weftd.sock"
    /// Lock, state file and default memif sockets live here.
    public var runtimeDir: String = "/run/weft"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case socket, runtimeDir = "runtime_dir"
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        socket = try c.decodeIfPresent(String.self, forKey: .socket) ?? socket
        runtimeDir = try c.decodeIfPresent(String.self, forKey: .runtimeDir) ?? runtimeDir
    }
}

public enum InterfaceType: String, Codable, CaseIterable, Sendable {
    /// Shared-memory packet interface (DPDK net_memif).
    case memif
    /// A kernel netdev through AF_PACKET (net_af_packet).
    case afPacket = "af_packet"
    /// A kernel netdev through AF_XDP (net_af_xdp); no fallback.
    case afXDP = "af_xdp"
    /// A kernel netdev: AF_XDP where it works, else AF_PACKET (said in the log and in `show interfaces`).
    case kernel
    /// A kernel TAP device created by Weft (net_tap).
    case tap
    /// A PCI device by address (vfio-pci / bifurcated mlx5).
    case pci
    /// Discards what it is sent, receives nothing (net_null, no-rx). For tests and sinks.
    case null
    /// An in-process ring pair (tests).
    case ring
    /// Any DPDK vdev, by raw devargs.
    case vdev
    /// An 802.1Q VLAN on an uplink interface (a tunnel side, not a port).
    case vlan
    /// A VXLAN tunnel (RFC 7348) over an uplink with underlay addresses.
    case vxlan

    /// Types that are DPDK ports (the rest are tunnels carried by a port).
    public var isPort: Bool { self != .vlan && self != .vxlan }
}

public enum MemifRole: String, Codable, Sendable { case server, client }
/// memif payload: Ethernet frames (default) or IP packets (NSM's IP payload).
public enum MemifMode: String, Codable, Sendable { case ethernet, ip }

public struct InterfaceConfig: Codable, Equatable, Sendable {
    public var name: String
    public var type: InterfaceType
    /// Kernel interface name (af_packet, af_xdp, kernel, tap).
    public var iface: String?
    /// memif: role (default server), socket path or abstract name, id, secret.
    public var role: MemifRole?
    public var socket: String?
    public var abstract: Bool?
    public var id: Int?
    public var secret: String?
    public var mode: MemifMode?
    /// pci: the device address, e.g. 0000:05:00.0.
    public var pci: String?
    /// vdev: raw devargs; pci: extra devargs appended after the address.
    public var devargs: String?
    /// pci: the kernel driver the device must be bound to for its DPDK driver
    /// (default vfio-pci; mlx5 NICs keep mlx5_core), whether weftd binds it
    /// (default false: it must be bound already), and whether a device weftd bound
    /// goes back to a kernel driver when it is removed (default true).
    public var driver: String?
    public var bind: Bool?
    public var restore: Bool?
    public var mac: String?
    public var rxQueues: Int?
    public var mtu: Int?
    /// vlan: the uplink interface (by name) or an NSM `via` label, and the VLAN id (0 = untagged).
    public var uplink: String?
    public var via: String?
    public var vlanID: Int?
    /// vxlan: VNI, remote underlay address, the remote's UDP port and ours.
    public var vni: Int?
    public var remote: String?
    public var port: Int?
    public var localPort: Int?
    /// Port types: this interface's own addresses on the underlay (it is then an uplink).
    public var underlay: UnderlayConfig?
    /// Port types: the network namespace (a path such as /proc/<pid>/ns/net or
    /// /var/run/netns/<name>) the device is opened in: a memif abstract socket inside a
    /// pod, or a pod's own kernel interface.
    public var netns: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, type, iface, role, socket, abstract, id, secret, mode, pci, devargs, driver, bind, restore, mac
        case rxQueues = "rx_queues", mtu, uplink, via, vlanID = "vlan_id"
        case vni, remote, port, localPort = "local_port", underlay, netns
    }

    public init(name: String, type: InterfaceType, iface: String? = nil, role: MemifRole? = nil,
                socket: String? = nil, abstract: Bool? = nil, id: Int? = nil, secret: String? = nil,
                pci: String? = nil, devargs: String? = nil, mac: String? = nil, rxQueues: Int? = nil, mtu: Int? = nil,
                uplink: String? = nil, via: String? = nil, vlanID: Int? = nil,
                vni: Int? = nil, remote: String? = nil, port: Int? = nil, localPort: Int? = nil, underlay: UnderlayConfig? = nil,
                netns: String? = nil, driver: String? = nil, bind: Bool? = nil, restore: Bool? = nil) {
        self.driver = driver; self.bind = bind; self.restore = restore
        self.name = name; self.type = type; self.iface = iface; self.role = role; self.socket = socket
        self.abstract = abstract; self.id = id; self.secret = secret; self.pci = pci; self.devargs = devargs
        self.mac = mac; self.rxQueues = rxQueues; self.mtu = mtu
        self.uplink = uplink; self.via = via; self.vlanID = vlanID
        self.vni = vni; self.remote = remote; self.port = port; self.localPort = localPort; self.underlay = underlay; self.netns = netns
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        type = try c.decode(InterfaceType.self, forKey: .type)
        iface = try c.decodeIfPresent(String.self, forKey: .iface)
        role = try c.decodeIfPresent(MemifRole.self, forKey: .role)
        socket = try c.decodeIfPresent(String.self, forKey: .socket)
        abstract = try c.decodeIfPresent(Bool.self, forKey: .abstract)
        id = try c.decodeIfPresent(Int.self, forKey: .id)
        secret = try c.decodeIfPresent(String.self, forKey: .secret)
        mode = try c.decodeIfPresent(MemifMode.self, forKey: .mode)
        pci = try c.decodeIfPresent(String.self, forKey: .pci)
        devargs = try c.decodeIfPresent(String.self, forKey: .devargs)
        driver = try c.decodeIfPresent(String.self, forKey: .driver)
        bind = try c.decodeIfPresent(Bool.self, forKey: .bind)
        restore = try c.decodeIfPresent(Bool.self, forKey: .restore)
        mac = try c.decodeIfPresent(String.self, forKey: .mac)
        rxQueues = try c.decodeIfPresent(Int.self, forKey: .rxQueues)
        mtu = try c.decodeIfPresent(Int.self, forKey: .mtu)
        uplink = try c.decodeIfPresent(String.self, forKey: .uplink)
        via = try c.decodeIfPresent(String.self, forKey: .via)
        vlanID = try c.decodeIfPresent(Int.self, forKey: .vlanID)
        vni = try c.decodeIfPresent(Int.self, forKey: .vni)
        remote = try c.decodeIfPresent(String.self, forKey: .remote)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        localPort = try c.decodeIfPresent(Int.self, forKey: .localPort)
        underlay = try c.decodeIfPresent(UnderlayConfig.self, forKey: .underlay)
        netns = try c.decodeIfPresent(String.self, forKey: .netns)
    }
}

/// An uplink's own place on the underlay network.
public struct UnderlayConfig: Codable, Equatable, Sendable {
    /// "192.0.2.1/24" and/or "2001:db8::1/64" (NSM_TUNNEL_IP overrides the one of its family).
    public var ipv4: String?
    public var ipv6: String?
    public var gateway4: String?
    public var gateway6: String?
    /// Underlay L3 MTU; VXLAN connections get 54 (IPv4) or 74 (IPv6) bytes less.
    public var mtu: Int = 1500
    /// UDP ports VXLAN is received on, besides the node's vxlan_port (at most 4 in all).
    public var vxlanPorts: [Int] = []
    /// Static neighbours: never aged, never resolved.
    public var neighbours: [NeighbourConfig] = []
    /// true: the kernel owns these addresses on the same netdev and answers
    /// ARP/ND/echo; Weft takes only its VXLAN and leaves the rest to the kernel.
    /// false (default): the uplink is Weft's; the rest is dropped and counted.
    public var kernelShared: Bool = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ipv4, ipv6, gateway4, gateway6, mtu, vxlanPorts = "vxlan_ports", neighbours
        case kernelShared = "kernel_shared"
    }
    public init(ipv4: String? = nil, ipv6: String? = nil, gateway4: String? = nil, gateway6: String? = nil, mtu: Int = 1500,
                vxlanPorts: [Int] = [], neighbours: [NeighbourConfig] = []) {
        self.ipv4 = ipv4; self.ipv6 = ipv6; self.gateway4 = gateway4; self.gateway6 = gateway6; self.mtu = mtu
        self.vxlanPorts = vxlanPorts; self.neighbours = neighbours
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        ipv4 = try c.decodeIfPresent(String.self, forKey: .ipv4)
        ipv6 = try c.decodeIfPresent(String.self, forKey: .ipv6)
        gateway4 = try c.decodeIfPresent(String.self, forKey: .gateway4)
        gateway6 = try c.decodeIfPresent(String.self, forKey: .gateway6)
        mtu = try c.decodeIfPresent(Int.self, forKey: .mtu) ?? 1500
        vxlanPorts = try c.decodeIfPresent([Int].self, forKey: .vxlanPorts) ?? []
        neighbours = try c.decodeIfPresent([NeighbourConfig].self, forKey: .neighbours) ?? []
        kernelShared = try c.decodeIfPresent(Bool.self, forKey: .kernelShared) ?? false
    }
}

public struct NeighbourConfig: Codable, Equatable, Sendable {
    public var ip: String
    public var mac: String
    enum CodingKeys: String, CodingKey, CaseIterable { case ip, mac }
    public init(ip: String, mac: String) { self.ip = ip; self.mac = mac }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        ip = try c.decode(String.self, forKey: .ip)
        mac = try c.decode(String.self, forKey: .mac)
    }
}

/// One ingress, N members: every member gets one copy of each frame from the
/// ingress; what a member sends goes to the ingress.
public struct ReplicationGroupConfig: Codable, Equatable, Sendable {
    public var name: String
    public var ingress: String
    public var members: [String]
    /// Frames of at least this size go to plain members as reference-counted clones; smaller are copied.
    /// 256 from perf/replicate-bench.sh: clones win clearly from 256 B up; below, the two are within noise.
    public var cloneMinBytes: Int = 256
    enum CodingKeys: String, CodingKey, CaseIterable { case name, ingress, members, cloneMinBytes = "clone_min_bytes" }
    public init(name: String, ingress: String, members: [String], cloneMinBytes: Int = 256) {
        self.name = name; self.ingress = ingress; self.members = members; self.cloneMinBytes = cloneMinBytes
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        ingress = try c.decode(String.self, forKey: .ingress)
        members = try c.decode([String].self, forKey: .members)
        cloneMinBytes = try c.decodeIfPresent(Int.self, forKey: .cloneMinBytes) ?? 256
    }
}

public struct BridgeMemberConfig: Codable, Equatable, Sendable {
    public var interface: String
    /// Members sharing a non-zero group never exchange frames (e.g. tunnels to the same fabric).
    public var splitHorizonGroup: Int = 0
    enum CodingKeys: String, CodingKey, CaseIterable { case interface, splitHorizonGroup = "split_horizon_group" }
    public init(interface: String, splitHorizonGroup: Int = 0) { self.interface = interface; self.splitHorizonGroup = splitHorizonGroup }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        interface = try c.decode(String.self, forKey: .interface)
        splitHorizonGroup = try c.decodeIfPresent(Int.self, forKey: .splitHorizonGroup) ?? 0
    }
}

public struct StaticMACConfig: Codable, Equatable, Sendable {
    public var mac: String
    public var interface: String
    enum CodingKeys: String, CodingKey, CaseIterable { case mac, interface }
    public init(mac: String, interface: String) { self.mac = mac; self.interface = interface }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        mac = try c.decode(String.self, forKey: .mac)
        interface = try c.decode(String.self, forKey: .interface)
    }
}

/// An L2 bridge domain: MAC learning with aging and a limit, flooding with split horizon.
public struct BridgeDomainConfig: Codable, Equatable, Sendable {
    public var name: String
    public var members: [BridgeMemberConfig]
    public var macLimit: Int = 4096
    public var macAgeSeconds: Int = 300
    public var staticMACs: [StaticMACConfig] = []
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, members, macLimit = "mac_limit", macAgeSeconds = "mac_age_seconds", staticMACs = "static_macs"
    }
    public init(name: String, members: [BridgeMemberConfig], macLimit: Int = 4096, macAgeSeconds: Int = 300, staticMACs: [StaticMACConfig] = []) {
        self.name = name; self.members = members; self.macLimit = macLimit; self.macAgeSeconds = macAgeSeconds; self.staticMACs = staticMACs
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        members = try c.decode([BridgeMemberConfig].self, forKey: .members)
        macLimit = try c.decodeIfPresent(Int.self, forKey: .macLimit) ?? 4096
        macAgeSeconds = try c.decodeIfPresent(Int.self, forKey: .macAgeSeconds) ?? 300
        staticMACs = try c.decodeIfPresent([StaticMACConfig].self, forKey: .staticMACs) ?? []
    }
}

/// What this node can do, as NSM-style labels, and how request hints pick a mode.
public enum Capabilities {
    public static let p2p = "p2p", replicate = "p2mp-replicate", bridge = "p2mp-bridge"
    public static let defaultLabels: [String: String] = [p2p: "true", replicate: "true", bridge: "true"]

    public enum Mode: String, Codable, Sendable { case p2p, replicate, bridge }

    /// A request's hint labels -> the mode. `p2mp: replicate|bridge` picks a
    /// P2MP mode; no hint (or `p2mp: "false"`) means P2P.
    public static func mode(hints: [String: String], offered: [String: String]) throws -> Mode {
        let mode: Mode
        switch hints["p2mp"] {
        case nil, "false": mode = .p2p
        case "replicate": mode = .replicate
        case "bridge": mode = .bridge
        case let other?:
            throw ApplyError(message: "no mode matches label p2mp=\(other); this node offers: \(describe(offered))")
        }
        let label = mode == .p2p ? p2p : mode == .replicate ? replicate : bridge
        guard offered[label] == "true" else {
            throw ApplyError(message: "this node does not offer \(label) (labels: \(describe(offered)))")
        }
        return mode
    }

    public static func describe(_ l: [String: String]) -> String {
        l.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
    }

    /// NSM_LABELS: "key:value,key2:value2" as NSM writes it ("key=value" is accepted too).
    public static func parse(_ s: String) -> [String: String] {
        var out: [String: String] = [:]
        for kv in s.split(separator: ",") {
            let sep: Character = kv.contains(":") ? ":" : "="
            let p = kv.split(separator: sep, maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if p.count == 2, !p[0].isEmpty { out[p[0]] = p[1] }
        }
        return out
    }
}

public struct CrossConnectConfig: Codable, Equatable, Sendable {
    public var name: String
    public var a: String
    public var b: String

    enum CodingKeys: String, CodingKey, CaseIterable { case name, a, b }
    public init(name: String, a: String, b: String) { self.name = name; self.a = a; self.b = b }
    public init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        a = try c.decode(String.self, forKey: .a)
        b = try c.decode(String.self, forKey: .b)
    }
}

// MARK: - Strict keys

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
}

/// An unknown key, with where it was found.
struct UnknownKeyError: Error {
    var codingPath: [CodingKey]
    var key: String
    var allowed: [String]
}

extension Decoder {
    /// A keyed container that first rejects keys `K` does not declare:
    /// Codable alone silently ignores them, and a typo must not go unnoticed.
    func strictContainer<K: CodingKey & CaseIterable>(keyedBy: K.Type) throws -> KeyedDecodingContainer<K> {
        let raw = try container(keyedBy: AnyKey.self)
        let allowed = K.allCases.map(\.stringValue)
        for key in raw.allKeys where !allowed.contains(key.stringValue) {
            throw UnknownKeyError(codingPath: codingPath + [key], key: key.stringValue, allowed: allowed)
        }
        return try container(keyedBy: K.self)
    }
}

// MARK: - Errors

/// A configuration error: where (file, line, key path) and what.
public struct ConfigError: Error, CustomStringConvertible, Equatable, Codable, Sendable {
    public var file: String
    public var line: Int?
    public var path: String
    public var message: String

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        if !path.isEmpty { s += ": \(path)" }
        return s + ": " + message
    }
}

/// Several problems found at once; the file is rejected as a whole.
public struct ConfigErrors: Error, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A path into the document: keys and sequence indexes.
public enum PathElement: Equatable, Sendable, CustomStringConvertible {
    case key(String)
    case index(Int)
    public var description: String {
        switch self {
        case .key(let k): return k
        case .index(let i): return "[\(i)]"
        }
    }
}

func render(_ path: [PathElement]) -> String {
    var s = ""
    for e in path {
        switch e {
        case .key(let k): s += s.isEmpty ? k : ".\(k)"
        case .index(let i): s += "[\(i)]"
        }
    }
    return s
}

func pathElements(_ codingPath: [CodingKey]) -> [PathElement] {
    codingPath.map { k in k.intValue.map { .index($0) } ?? .key(k.stringValue) }
}

// MARK: - Loading

public enum ConfigLoader {
    /// Parse, decode and validate. Throws ConfigErrors naming file, line and key.
    public static func load(path: String) throws -> WeftConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: nil, path: "", message: "cannot read file")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: nil, path: "", message: "file is not UTF-8")])
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> WeftConfig {
        let node: Node?
        do {
            // UTF-8 always: Yams' default would follow YAMS_DEFAULT_ENCODING from the environment.
            node = try Yams.compose(yaml: text, .default, .default, .utf8)
        } catch let e as YamlError {
            throw ConfigErrors(errors: [yamlError(e, file: file)])
        }
        guard let node, case .mapping = node else {
            throw ConfigErrors(errors: [ConfigError(file: file, line: node?.mark?.line ?? 1, path: "",
                                                    message: "expected a mapping at the top level")])
        }
        // Yams traps (integer overflow) instead of failing on a base-60 number beyond Int where an integer is read.
        if let (path, bad) = sexagesimalOverflow(in: node) {
            throw ConfigErrors(errors: [ConfigError(file: file, line: bad.mark?.line, path: render(path),
                                                    message: "'\(bad.string ?? "")' is a base-60 number beyond the integer range (quote it if it is a string)")])
        }
        let decoded: WeftConfig
        // One decoder per file: creating one reads the whole process environment (Yams' default encoding).
        let decoder = YAMLDecoder(encoding: .utf8)
        do {
            decoded = try decoder.decode(WeftConfig.self, from: node)
        } catch {
            // Decoding stops at its first error: find every one, part by part.
            throw ConfigErrors(errors: decodingErrors(node, file: file, decoder: decoder))
        }
        var config = decoded
        applyEnvironment(&config, ProcessInfo.processInfo.environment)
        let issues = Validator.validate(config)
        if !issues.isEmpty {
            throw ConfigErrors(errors: issues.map {
                ConfigError(file: file, line: line(of: $0.path, in: node, keyLine: true), path: render($0.path), message: $0.message)
            })
        }
        return config
    }

    /// The first plain scalar value Yams would overflow on when reading it as an
    /// integer: YAML 1.1's base-60 ("1:30" = 90), which Yams (6.2.2, Int.construct)
    /// computes without overflow checks, e.g. `vxlan_port: 1:0:0:0:0:0:0:0:0:0:0`.
    /// Each node is looked at once, however often aliases repeat it.
    static func sexagesimalOverflow(in root: Node) -> ([PathElement], Node)? {
        var stack: [([PathElement], Node)] = [([], root)]
        var seen = Set<String>()
        while let (path, n) = stack.popLast() {
            switch n {
            case .scalar(let s):
                if s.style == .plain || s.style == .any, sexagesimalOverflows(s.string) { return (path, n) }
            case .mapping(let m):
                guard seen.insert("m\(m.mark.map { "\($0.line):\($0.column)" } ?? "?"):\(m.count)").inserted else { continue }
                for (k, v) in m.reversed() { stack.append((path + [.key(k.string ?? "")], v)) }
            case .sequence(let q):
                guard seen.insert("s\(q.mark.map { "\($0.line):\($0.column)" } ?? "?"):\(q.count)").inserted else { continue }
                for (i, v) in q.enumerated().reversed() { stack.append((path + [.index(i)], v)) }
            case .alias:
                continue
            }
        }
        return nil
    }

    /// Whether Yams's integer construction overflows on `text`, step by step as it
    /// computes: "_" dropped, an optional sign, no 0/0x/0b/0o prefix (other
    /// radixes), ':'-separated decimal digits, value += digit * base, base *= 60.
    static func sexagesimalOverflows(_ text: String) -> Bool {
        let s = text.replacingOccurrences(of: "_", with: "")
        let negative = s.hasPrefix("-")
        let body = negative || s.hasPrefix("+") ? s.dropFirst() : Substring(s)
        guard !body.hasPrefix("0"), body.contains(":") else { return false }
        var digits: [Int] = []
        for part in body.split(separator: ":", omittingEmptySubsequences: false) {
            guard let d = Int(part, radix: 10) else { return false } // Yams: not an integer (no trap)
            digits.append(d)
        }
        var base = 1, value = 0
        for d in digits.reversed() {
            let (m, o1) = d.multipliedReportingOverflow(by: base)
            let (v, o2) = value.addingReportingOverflow(m)
            let (b, o3) = base.multipliedReportingOverflow(by: 60)
            if o1 || o2 || o3 { return true }
            value = v; base = b
        }
        return negative && value == .min
    }

    /// NSM's variables override the file where NSM defines them:
    /// NSM_VXLAN_PORT the node's VXLAN port, NSM_TUNNEL_IP the address (of
    /// its family, keeping the prefix) of the first uplink with an underlay.
    public static func applyEnvironment(_ c: inout WeftConfig, _ env: [String: String]) {
        if let p = env["NSM_VXLAN_PORT"], let v = Int(p) { c.vxlanPort = v }
        if let ip = env["NSM_TUNNEL_IP"], let bytes = IPAddress.parse(ip),
           let i = c.interfaces.firstIndex(where: { $0.underlay != nil }) {
            var u = c.interfaces[i].underlay!
            if bytes.count == 4 {
                u.ipv4 = "\(ip)/\(u.ipv4.flatMap(IPAddress.parseCIDR)?.prefix ?? 32)"
            } else {
                u.ipv6 = "\(ip)/\(u.ipv6.flatMap(IPAddress.parseCIDR)?.prefix ?? 128)"
            }
            c.interfaces[i].underlay = u
        }
        if let f = env["NSM_DEVICE_SELECTOR_FILE"], !f.isEmpty { c.deviceSelectorFile = f }
        if let l = env["NSM_LABELS"] { c.labels.merge(Capabilities.parse(l)) { _, new in new } }
        if let p = env["NSM_PROMETHEUS"] {
            if let b = MetricsConfig.parseBool(p) { c.metrics.prometheus = b } else { c.metrics.badEnvironment = p }
        }
        if let l = env["NSM_PROMETHEUS_LISTEN_ON"], !l.isEmpty { c.metrics.listenOn = l }
    }

    static func yamlError(_ e: YamlError, file: String) -> ConfigError {
        switch e {
        case .scanner(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, path: "", message: "YAML syntax: \(problem)\(context.map { " \($0.text)" } ?? "")")
        case .parser(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, path: "", message: "YAML syntax: \(problem)\(context.map { " \($0.text)" } ?? "")")
        case .composer(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, path: "", message: "YAML: \(problem)\(context.map { " \($0.text)" } ?? "")")
        default:
            return ConfigError(file: file, line: nil, path: "", message: "YAML: \(e)")
        }
    }

    /// Every decoding error of a file: each section, and each element of each
    /// list, decoded on its own, so that one mistake does not hide the next.
    static func decodingErrors(_ root: Node, file: String, decoder: YAMLDecoder) -> [ConfigError] {
        var out: [ConfigError] = []
        func one<T: Decodable>(_ type: T.Type, _ n: Node, _ prefix: [PathElement]) {
            do { _ = try decoder.decode(T.self, from: n) } catch {
                out.append(configError(error, file: file, root: root, prefix: prefix))
            }
        }
        func list<T: Decodable>(_ type: T.Type, _ n: Node, _ key: String) {
            guard case .sequence(let seq) = n else { one([T].self, n, [.key(key)]); return }
            for (i, e) in seq.enumerated() { one(T.self, e, [.key(key), .index(i)]) }
        }
        guard case .mapping(let top) = root else { return out }
        let allowed = WeftConfig.CodingKeys.allCases.map(\.stringValue)
        for (k, v) in top {
            let key = k.string ?? ""
            switch key {
            case "eal": one(EALConfig.self, v, [.key(key)])
            case "dataplane": one(DataplaneConfig.self, v, [.key(key)])
            case "admin": one(AdminConfig.self, v, [.key(key)])
            case "nsm": one(NSMFileConfig.self, v, [.key(key)])
            case "metrics": one(MetricsConfig.self, v, [.key(key)])
            case "interfaces": list(InterfaceConfig.self, v, key)
            case "cross_connects": list(CrossConnectConfig.self, v, key)
            case "replication_groups": list(ReplicationGroupConfig.self, v, key)
            case "bridge_domains": list(BridgeDomainConfig.self, v, key)
            case "device_selector_file": one(String.self, v, [.key(key)])
            case "vxlan_port": one(Int.self, v, [.key(key)])
            case "labels": one([String: String].self, v, [.key(key)])
            default:
                out.append(ConfigError(file: file, line: k.mark?.line, path: key,
                                       message: "unknown key '\(key)' (expected one of: \(allowed.joined(separator: ", ")))"))
            }
        }
        if out.isEmpty {
            // Should not happen: the whole failed but no part did. Say what the whole said.
            do { _ = try decoder.decode(WeftConfig.self, from: root) } catch {
                out.append(configError(error, file: file, root: root, prefix: []))
            }
        }
        return out.sorted { ($0.line ?? 0) < ($1.line ?? 0) }
    }

    static func configError(_ e: Error, file: String, root: Node, prefix: [PathElement]) -> ConfigError {
        if let e = e as? UnknownKeyError {
            let p = prefix + pathElements(e.codingPath)
            return ConfigError(file: file, line: line(of: p, in: root, keyLine: true), path: render(p),
                               message: "unknown key '\(e.key)' (expected one of: \(e.allowed.joined(separator: ", ")))")
        }
        if let e = e as? DecodingError { return decodingError(e, file: file, root: root, prefix: prefix) }
        return ConfigError(file: file, line: line(of: prefix, in: root, keyLine: true), path: render(prefix), message: "\(e)")
    }

    static func decodingError(_ e: DecodingError, file: String, root: Node, prefix: [PathElement] = []) -> ConfigError {
        func pathElements(_ c: [CodingKey]) -> [PathElement] { prefix + WeftModel.pathElements(c) }
        switch e {
        case .keyNotFound(let key, let ctx):
            let p = pathElements(ctx.codingPath)
            return ConfigError(file: file, line: line(of: p, in: root, keyLine: false), path: render(p + [.key(key.stringValue)]),
                               message: "missing required key '\(key.stringValue)'")
        case .typeMismatch(let type, let ctx):
            let p = pathElements(ctx.codingPath)
            return ConfigError(file: file, line: line(of: p, in: root, keyLine: false), path: render(p),
                               message: "expected \(typeName(type))")
        case .valueNotFound(let type, let ctx):
            let p = pathElements(ctx.codingPath)
            return ConfigError(file: file, line: line(of: p, in: root, keyLine: false), path: render(p),
                               message: "expected \(typeName(type)), found null")
        case .dataCorrupted(let ctx):
            let p = pathElements(ctx.codingPath)
            var msg = ctx.debugDescription
            if let last = p.last, case .key(let k) = last, k == "type" {
                msg = "unknown interface type (expected one of: \(InterfaceType.allCases.map(\.rawValue).joined(separator: ", ")))"
            } else if let last = p.last, case .key(let k) = last, k == "role" {
                msg = "unknown memif role (expected server or client)"
            }
            return ConfigError(file: file, line: line(of: p, in: root, keyLine: false), path: render(p), message: msg)
        @unknown default:
            return ConfigError(file: file, line: nil, path: "", message: "\(e)")
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is Int.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        default:
            let n = String(describing: t)
            if n.hasPrefix("Array") { return "a list" }
            if n.hasPrefix("Dictionary") || n.hasSuffix("Config") { return "a mapping" }
            return n
        }
    }

    /// The line of the node at `path`. With keyLine, the line of the key
    /// itself (where a person would look for "interfaces[1].socket").
    static func line(of path: [PathElement], in root: Node, keyLine: Bool) -> Int? {
        var node = root
        var best = root.mark?.line
        for (i, e) in path.enumerated() {
            switch (e, node) {
            case (.key(let k), .mapping(let m)):
                guard let pair = m.first(where: { $0.key.string == k }) else { return best }
                let isLast = i == path.count - 1
                best = (isLast && keyLine ? pair.key.mark?.line : pair.value.mark?.line) ?? best
                node = pair.value
            case (.index(let idx), .sequence(let s)):
                guard idx < s.count else { return best }
                node = s[idx]
                best = node.mark?.line ?? best
            default:
                return best
            }
        }
        return best
    }
}
