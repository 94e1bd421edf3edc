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
    "mnl", "bpf", "xdp",
]

let package = Package(
    name: "weft",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "weftd", targets: ["weftd"]),
        .executable(name: "weftctl", targets: ["weftctl"]),
        .executable(name: "weft-pktgen", targets: ["weft-pktgen"]),
        .library(name: "WeftCore", targets: ["WeftCore"]),
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
    ],
    targets: [
        .target(
            name: "CWeft",
            path: "CShims/weft",
            sources: ["src"],
            publicHeadersPath: "include",
            cSettings: [.headerSearchPath("src"), .unsafeFlags(dpdkCFlags)],
            linkerSettings: dpdkLibs.map { .linkedLibrary($0) }
        ),
        .target(
            name: "WeftCore",
            dependencies: [
                "CWeft",
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
                "WeftCore", "CWeft", "WeftNSMProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weftd",
            dependencies: [
                "WeftCore", "WeftNSM", "CWeft",
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
                "WeftCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weft-pktgen",
            dependencies: [
                "WeftCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // perf/: benchmarks, never timed assertions in tests.
        .executableTarget(
            name: "weft-stagebench",
            dependencies: ["WeftCore"],
            path: "perf/stagebench",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "weft-replicatebench",
            dependencies: ["WeftCore"],
            path: "perf/replicatebench",
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftCoreTests",
            dependencies: ["WeftCore", "CWeft"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftNSMTests",
            dependencies: ["WeftNSM", "WeftCore", "WeftNSMProto", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .testTarget(
            name: "WeftSystemTests",
            dependencies: [
                "WeftCore", "WeftNSMProto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
