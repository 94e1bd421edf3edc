import ArgumentParser
import Foundation
import WeftAdmin
import WeftControl
import WeftDataplane
import WeftModel
import WeftNSM

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a configuration file and exit.")

    @Option(name: .shortAndLong, help: "The YAML configuration file.")
    var config: String

    func run() throws {
        do {
            let c = try ConfigLoader.load(path: config)
            let env = ProcessInfo.processInfo.environment
            if NSMSettings.enabled(file: c.nsm, env: env) {
                do { _ = try NSMSettings.load(file: c.nsm, env: env, capabilities: c.labels) } catch {
                    FileHandle.standardError.write(Data("\(config): nsm: \(error)\n".utf8))
                    throw ExitCode(1)
                }
            }
            print("\(config): ok (\(c.interfaces.count) interfaces, \(c.crossConnects.count) cross-connects, \(c.dataplane.workers.count) workers)")
        } catch let e as ConfigErrors {
            FileHandle.standardError.write(Data((e.description + "\n").utf8))
            throw ExitCode(1)
        }
    }
}
