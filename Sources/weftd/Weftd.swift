import ArgumentParser

@main
struct Weftd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weftd",
        abstract: "Weft: a node-local DPDK packet forwarder for service-mesh networks.",
        version: weftVersion,
        subcommands: [Run.self, Validate.self]
    )
}

let weftVersion = "0.4.0"
