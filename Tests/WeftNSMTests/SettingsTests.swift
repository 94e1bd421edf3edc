import WeftAdmin
import WeftControl
import WeftDataplane
import WeftKernel
import WeftModel
import XCTest
@testable import WeftNSM

final class SettingsTests: XCTestCase {

    private func load(file: NSMFileConfig? = nil, env: [String: String] = [:],
                      capabilities: [String: String] = [:]) throws -> NSMSettings {
        try NSMSettings.load(file: file, env: env, capabilities: capabilities)
    }

    /// The error's description, or a failure if nothing was thrown.
    private func loadError(env: [String: String], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let s = try load(env: env)
            XCTFail("expected an error, got \(s)", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    // MARK: NSMSettings.load

    func testDefaults() throws {
        let s = try load(capabilities: ["p2mp-replicate": "true"])
        XCTAssertEqual(s.name, "forwarder")
        XCTAssertEqual(s.nsName, "forwarder")
        XCTAssertEqual(s.connectTo, .unix("/connect.to.socket"))
        XCTAssertEqual(s.listenOn, [.unix("/listen.on.socket")])
        XCTAssertEqual(s.dialTimeout, .milliseconds(750))
        XCTAssertEqual(s.maxTokenLifetime, .seconds(600))
        XCTAssertEqual(s.logLevel, "INFO")
        XCTAssertEqual(s.mechanismPriority, [])
        XCTAssertTrue(s.register)
        XCTAssertEqual(s.labels, ["p2p": "true", "p2mp-replicate": "true"])
        XCTAssertEqual(try load().labels, ["p2p": "true"])
    }

    /// Security: mTLS by default; plaintext only when asked; the SPIFFE socket and the
    /// SVID wait; NSM's built-in registry client policies accepted, custom ones refused.
    func testSecuritySettings() throws {
        let d = try load()
        XCTAssertFalse(d.insecure)
        XCTAssertEqual(d.spiffeSocket, "unix:///run/spire/sockets/agent.sock")
        XCTAssertEqual(d.svidTimeout, .seconds(60))
        var f = NSMFileConfig()
        f.insecure = true
        f.spiffeSocket = "unix:///tmp/agent.sock"
        f.svidTimeout = "5s"
        let s = try load(file: f)
        XCTAssertTrue(s.insecure)
        XCTAssertEqual(s.spiffeSocket, "unix:///tmp/agent.sock")
        XCTAssertEqual(s.svidTimeout, .seconds(5))
        XCTAssertFalse(try load(file: f, env: ["NSM_INSECURE": "false"]).insecure, "the variable overrides the file")
        XCTAssertEqual(try load(env: ["SPIFFE_ENDPOINT_SOCKET": "unix:/run/x.sock"]).spiffeSocket, "unix:/run/x.sock")
        XCTAssertTrue(loadError(env: ["NSM_INSECURE": "maybe"]).contains("NSM_INSECURE: 'maybe'"))
        XCTAssertTrue(loadError(env: ["SPIFFE_ENDPOINT_SOCKET": "tcp://1.2.3.4:1"]).contains("SPIFFE_ENDPOINT_SOCKET"))
        XCTAssertTrue(loadError(env: ["NSM_SVID_TIMEOUT": "soon"]).contains("NSM_SVID_TIMEOUT"))
        XCTAssertNoThrow(try load(env: ["NSM_REGISTRY_CLIENT_POLICIES": "etc/nsm/opa/common/.*.rego,etc/nsm/opa/registry/.*.rego,etc/nsm/opa/client/.*.rego"]))
        XCTAssertTrue(loadError(env: ["NSM_REGISTRY_CLIENT_POLICIES": "etc/nsm/opa/common/.*.rego,/policies/mine.rego"])
            .contains("'/policies/mine.rego' is not one of NSM's built-in policy sets"))
        XCTAssertEqual(try WorkloadAPIClient.socketPath("unix:///run/spire/sockets/agent.sock"), "/run/spire/sockets/agent.sock")
        XCTAssertEqual(try WorkloadAPIClient.socketPath("unix:/run/agent.sock"), "/run/agent.sock")
        XCTAssertThrowsError(try WorkloadAPIClient.socketPath("unix://relative"))
    }

    func testFileValuesApply() throws {
        var f = NSMFileConfig()
        f.name = "weft-node1"
        f.nsname = "fwd"
        f.listenOn = ["unix:///var/run/weft.sock", "tcp://0.0.0.0:5002"]
        f.connectTo = "unix:///var/lib/networkservicemesh/nsm.io.sock"
        f.dialTimeout = "2s"
        f.maxTokenLifetime = "1h"
        f.logLevel = "debug"
        f.mechanismPriority = ["memif", "KERNEL"]
        f.register = false
        let s = try load(file: f)
        XCTAssertEqual(s.name, "weft-node1")
        XCTAssertEqual(s.nsName, "fwd")
        XCTAssertEqual(s.listenOn, [.unix("/var/run/weft.sock"), .tcp(host: "0.0.0.0", port: 5002)])
        XCTAssertEqual(s.connectTo, .unix("/var/lib/networkservicemesh/nsm.io.sock"))
        XCTAssertEqual(s.dialTimeout, .seconds(2))
        XCTAssertEqual(s.maxTokenLifetime, .seconds(3600))
        XCTAssertEqual(s.logLevel, "DEBUG")
        XCTAssertEqual(s.mechanismPriority, ["MEMIF", "KERNEL"])
        XCTAssertFalse(s.register)
    }

    func testEnvOverridesFile() throws {
        var f = NSMFileConfig()
        f.name = "from-file"
        f.nsname = "file-ns"
        f.dialTimeout = "2s"
        f.connectTo = "unix:///file.sock"
        f.listenOn = ["unix:///file-listen.sock"]
        let s = try load(file: f, env: [
            "NSM_NAME": "from-env",
            "NSM_DIAL_TIMEOUT": "5s",
            "NSM_CONNECT_TO": "tcp://10.0.0.1:5001",
            "NSM_LISTEN_ON": "unix:///env-listen.sock",
        ])
        XCTAssertEqual(s.name, "from-env")
        XCTAssertEqual(s.nsName, "file-ns", "a value only in the file stays")
        XCTAssertEqual(s.dialTimeout, .seconds(5))
        XCTAssertEqual(s.connectTo, .tcp(host: "10.0.0.1", port: 5001))
        XCTAssertEqual(s.listenOn, [.unix("/env-listen.sock")])
    }

    func testNSMLabels() throws {
        let s = try load(env: ["NSM_LABELS": "a:b,c:d"], capabilities: ["p2mp-x": "true"])
        XCTAssertEqual(s.labels, ["p2p": "true", "p2mp-x": "true", "a": "b", "c": "d"])
        // NSM_LABELS can override p2p; '=' is accepted too; blanks are trimmed.
        let t = try load(env: ["NSM_LABELS": " p2p:false , my_forwarder_capability=true"])
        XCTAssertEqual(t.labels, ["p2p": "false", "my_forwarder_capability": "true"])
    }

    func testSRIOVSettingsFromFileAndEnvironment() throws {
        XCTAssertNil(try load().sriovConfigFile)
        XCTAssertEqual(try load().pciDevicesPath, "/sys/bus/pci/devices")
        var f = NSMFileConfig()
        f.sriovConfigFile = "/etc/weft/pci.config"
        XCTAssertEqual(try load(file: f).sriovConfigFile, "/etc/weft/pci.config")
        let e = try load(file: f, env: ["NSM_SRIOV_CONFIG_FILE": "/other.config", "NSM_PCI_DEVICES_PATH": "/host/sys/bus/pci/devices"])
        XCTAssertEqual(e.sriovConfigFile, "/other.config")
        XCTAssertEqual(e.pciDevicesPath, "/host/sys/bus/pci/devices")
        XCTAssertTrue(loadError(env: ["NSM_SRIOV_CONFIG_FILE": "pci.config"]).contains("NSM_SRIOV_CONFIG_FILE: 'pci.config' is not an absolute path"))
        XCTAssertTrue(loadError(env: ["NSM_PCI_DEVICES_PATH": "/sys/class/net"]).contains("NSM_PCI_DEVICES_PATH"))
        XCTAssertEqual([try load().vfioPath, try load().cgroupPath], ["/dev/vfio", "/sys/fs/cgroup/devices"])
        let v = try load(env: ["NSM_VFIO_PATH": "/host/dev/vfio", "NSM_CGROUP_PATH": "/host/sys/fs/cgroup/devices"])
        XCTAssertEqual([v.vfioPath, v.cgroupPath], ["/host/dev/vfio", "/host/sys/fs/cgroup/devices"])
        XCTAssertTrue(loadError(env: ["NSM_CGROUP_PATH": "cgroup"]).contains("NSM_CGROUP_PATH"))
    }

    func testMalformedLabelsNamesTheVariable() {
        XCTAssertTrue(loadError(env: ["NSM_LABELS": "novalue"]).contains("NSM_LABELS"))
    }

    func testMalformedDialTimeoutNamesTheVariable() {
        for bad in ["abc", "750", "-1s", "0s"] {
            let e = loadError(env: ["NSM_DIAL_TIMEOUT": bad])
            XCTAssertTrue(e.contains("NSM_DIAL_TIMEOUT"), "\(bad): \(e)")
        }
    }

    func testMalformedConnectToNamesTheVariable() {
        let e = loadError(env: ["NSM_CONNECT_TO": "http://nsmgr:5001"])
        XCTAssertTrue(e.contains("NSM_CONNECT_TO"), e)
    }

    func testMalformedListenOnNamesTheVariable() {
        let e = loadError(env: ["NSM_LISTEN_ON": "unix:///ok.sock,tcp://nohost"])
        XCTAssertTrue(e.contains("NSM_LISTEN_ON"), e)
    }

    func testMalformedLogLevelNamesTheVariable() {
        let e = loadError(env: ["NSM_LOG_LEVEL": "LOUD"])
        XCTAssertTrue(e.contains("NSM_LOG_LEVEL"), e)
        XCTAssertEqual(try load(env: ["NSM_LOG_LEVEL": "trace"]).logLevel, "TRACE")
    }

    func testMalformedMaxTokenLifetimeNamesTheVariable() {
        let e = loadError(env: ["NSM_MAX_TOKEN_LIFETIME": "forever"])
        XCTAssertTrue(e.contains("NSM_MAX_TOKEN_LIFETIME"), e)
    }

    func testEverySeveralProblemsAreReported() {
        let e = loadError(env: ["NSM_LOG_LEVEL": "LOUD", "NSM_DIAL_TIMEOUT": "soon"])
        XCTAssertTrue(e.contains("NSM_LOG_LEVEL"), e)
        XCTAssertTrue(e.contains("NSM_DIAL_TIMEOUT"), e)
    }

    func testEnabled() {
        XCTAssertFalse(NSMSettings.enabled(file: nil, env: [:]))
        XCTAssertFalse(NSMSettings.enabled(file: nil, env: ["NSM_LISTEN_ON": ""]))
        XCTAssertTrue(NSMSettings.enabled(file: nil, env: ["NSM_LISTEN_ON": "unix:///x.sock"]))
        XCTAssertTrue(NSMSettings.enabled(file: NSMFileConfig(), env: [:]))
    }

    // MARK: parseGoDuration

    func testParseGoDuration() {
        XCTAssertEqual(parseGoDuration("750ms"), .milliseconds(750))
        XCTAssertEqual(parseGoDuration("10m"), .seconds(600))
        XCTAssertEqual(parseGoDuration("1h30m"), .seconds(5400))
        XCTAssertEqual(parseGoDuration("2.5s"), .milliseconds(2500))
        XCTAssertEqual(parseGoDuration("0"), .zero)
        XCTAssertEqual(parseGoDuration("15s"), .seconds(15))
        XCTAssertEqual(parseGoDuration("1m0.5s"), .milliseconds(60_500))
        XCTAssertEqual(parseGoDuration("250us"), .microseconds(250))
        XCTAssertEqual(parseGoDuration("100ns"), .nanoseconds(100))
    }

    func testParseGoDurationRejects() {
        for bad in ["abc", "10", "5x", "", "ms", "1h30", "s10"] {
            XCTAssertNil(parseGoDuration(bad), "'\(bad)'")
        }
    }

    // MARK: NSMURL.parse

    func testURLParse() throws {
        XCTAssertEqual(try NSMURL.parse("unix:///a/b"), .unix("/a/b"))
        XCTAssertEqual(try NSMURL.parse("tcp://1.2.3.4:5001"), .tcp(host: "1.2.3.4", port: 5001))
        XCTAssertEqual(try NSMURL.parse("tcp://[fd00::1]:5001"), .tcp(host: "fd00::1", port: 5001))
        XCTAssertEqual(try NSMURL.parse("tcp://:5001"), .tcp(host: "0.0.0.0", port: 5001))
        XCTAssertEqual(try NSMURL.parse("/bare/path.sock"), .unix("/bare/path.sock"))
        XCTAssertTrue(try NSMURL.parse("unix:///a").isLocal)
        XCTAssertFalse(try NSMURL.parse("tcp://h:1").isLocal)
    }

    func testURLDescriptionRoundTrips() throws {
        for s in ["unix:///a/b", "tcp://1.2.3.4:5001", "tcp://[fd00::1]:5001"] {
            XCTAssertEqual(try NSMURL.parse(s).description, s)
        }
    }

    func testURLParseErrors() {
        for bad in ["http://x", "unix://relative", "tcp://host", "tcp://host:0", "tcp://host:70000",
                    "tcp://host:port", "tcp://[fd00::1", "tcp://[fd00::1]", "relative/path",
                    "unix:///" + String(repeating: "x", count: 120)] {
            XCTAssertThrowsError(try NSMURL.parse(bad), "'\(bad)'") { e in
                XCTAssertTrue("\(e)".contains(String(bad.prefix(8))), "\(e)")
            }
        }
    }
}
