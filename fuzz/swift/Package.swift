// swift-tools-version:5.4
//
// Coverage-guided fuzzers (libFuzzer + ASan) for Weft's Swift side: the YAML
// config loader and validator, and the admin socket's request decoder.
// Not part of the main build: fuzz/swift/run.sh builds it with
//   swift build -c release --package-path fuzz/swift \
//     -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address
// (or -c debug) which instruments WeftModel, WeftAdmin and Yams (Swift and
// libyaml) as well.
//
// Tools version 5.4 on purpose: from 5.5 SwiftPM renames an executable's
// entry point to <target>_main and links with --defsym main=<target>_main,
// which fails here, where main() is libFuzzer's.
import PackageDescription

let package = Package(
    name: "weft-fuzz",
    dependencies: [
        // The root package: only its WeftModelLib product (WeftModel, WeftAdmin) is built.
        .package(name: "weft", path: "../.."),
        // The harness composes and decodes YAML itself (decode without validating).
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
    ],
    targets: [
        .executableTarget(
            name: "fuzz_config",
            dependencies: [.product(name: "WeftModelLib", package: "weft"), .product(name: "Yams", package: "Yams")],
            // libFuzzer provides main(): no top-level code in the harness.
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "fuzz_admin",
            dependencies: [.product(name: "WeftModelLib", package: "weft")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ],
    swiftLanguageVersions: [.v5]
)
