// swift-tools-version:6.1
//
// Weft: a node-local packet forwarder. Swift control layer (this package's
// Swift targets) over a C poll-mode core on DPDK (CShims/weft).
import PackageDescription

// Debian's libdpdk.pc has a multi-line Description that SwiftPM's pkg-config
// parser rejects, so a system-library target would get no flags. The DPDK
// flags are therefore spelled out here, for Debian 12's DPDK 22.11 layout.
let dpdkCFlags: [String] = [
    "-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk",
    "-include", "rte_config.h", "-march=corei7", "-O3",
    "-Wall", "-Wno-address-of-packed-member", "-D_GNU_SOURCE", "-DALLOW_EXPERIMENTAL_API",
]
let dpdkLibs = [
    "rte_eal", "rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_rcu",
    "rte_net", "rte_kvargs", "rte_telemetry", "rte_net_ring", "rte_bus_vdev",
    "mnl", "bpf", "xdp", "pcap",
]

let package = Package(
    name: "weft",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "weftd", targets: ["weftd"]),
        .executable(name: "weftctl", targets: ["weftctl"]),
        .executable(name: "weft-pktgen", targets: ["weft-pktgen"]),
        .library(name: "WeftModelLib", targets: ["WeftModel", "WeftAdmin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // NSM's gRPC API (generated code is committed; scripts/gen-proto.sh regenerates it).
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        // SPIFFE identity: mTLS with X.509-SVIDs, NSM's ES256 path tokens.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // Kernel plumbing without DPDK: rtnetlink and ethtool in any namespace, and
        // the per-thread error every C call reports through.
        .target(
            name: "CWeftKernel",
            path: "CShims/kernel",
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [.unsafeFlags(["-O2", "-Wall", "-D_GNU_SOURCE"])],
            linkerSettings: [.linkedLibrary("mnl")]
        ),
        // The C poll-mode core on DPDK. weft.h is the product API; weft_test.h and
        // weft_pktgen.h the tests', benchmarks' and generator's hooks.
        .target(
            name: "CWeft",
            dependencies: ["CWeftKernel"],
            path: "CShims/weft",
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [.headerSearchPath("src"), .unsafeFlags(dpdkCFlags)],
            linkerSettings: dpdkLibs.map { .linkedLibrary($0) }
        ),
        // Configuration, validation and the values weftd reports: pure Swift.
        .target(
            name: "WeftModel",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // weftctl's protocol and tables: what weftctl links (no DPDK).
        .target(
            name: "WeftAdmin",
            dependencies: ["WeftModel"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Netlink, ethtool and namespaces over CWeftKernel (no DPDK).
        .target(
            name: "WeftKernel",
            dependencies: ["CWeftKernel", "WeftModel"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // The typed wrapper over the C core: the only Swift importer of CWeft.
        .target(
            name: "WeftDataplane",
            dependencies: ["CWeft", "WeftModel"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Prometheus: the text exposition format, histograms, and /metrics over HTTP/1.1.
        .target(
            name: "WeftMetrics",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Reconciler, transactions with rollback, status.
        .target(
            name: "WeftControl",
            dependencies: [
                "WeftModel", "WeftDataplane", "WeftKernel", "WeftMetrics",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // NSM's wire API: protos (proto/, not compiled by SwiftPM) and the generated Swift.
        .target(
            name: "WeftNSMProto",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["proto"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // Weft as an NSM forwarder: NetworkService, MonitorConnection, Health, registry, mechanisms.
        .target(
            name: "WeftNSM",
            dependencies: [
                "WeftControl", "WeftKernel", "WeftModel", "WeftNSMProto", "WeftMetrics",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCertificateReloading", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weftd",
            dependencies: [
                "WeftModel", "WeftAdmin", "WeftDataplane", "WeftControl", "WeftNSM", "WeftMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weftctl",
            dependencies: [
                "WeftModel", "WeftAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weft-pktgen",
            dependencies: [
                "WeftModel", "WeftAdmin", "WeftDataplane",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // perf/: benchmarks, never timed assertions in tests.
        .executableTarget(
            name: "weft-stagebench",
            dependencies: ["WeftModel", "WeftDataplane"],
            path: "perf/stagebench",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weft-replicatebench",
            dependencies: ["WeftModel", "WeftDataplane"],
            path: "perf/replicatebench",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftCoreTests",
            dependencies: ["WeftModel", "WeftAdmin", "WeftKernel", "WeftDataplane", "WeftControl", "WeftMetrics", "CWeft", "CWeftKernel"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // The control module against a fake dataplane: no EAL.
        .testTarget(
            name: "WeftControlTests",
            dependencies: [
                "WeftControl", "WeftDataplane", "WeftModel", "WeftKernel", "WeftNSMProto",
                .product(name: "Logging", package: "swift-log"),
                // FDProxyTests serve and dial a real gRPC service through the proxy.
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftNSMTests",
            dependencies: ["WeftNSM", "WeftModel", "WeftAdmin", "WeftKernel", "WeftDataplane", "WeftControl", "WeftNSMProto", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                           .product(name: "X509", package: "swift-certificates"), .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "SwiftASN1", package: "swift-asn1"), .product(name: "NIOSSL", package: "swift-nio-ssl")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftSystemTests",
            dependencies: [
                "WeftModel", "WeftAdmin", "WeftKernel", "WeftDataplane", "WeftControl", "WeftNSMProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
