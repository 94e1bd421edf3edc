/// The EAL command line built from the configuration.
public enum EALArguments {
    public static func build(_ c: WeftConfig, program: String = "weftd") -> [String] {
        let lcores = ([c.eal.mainLcore] + c.dataplane.workers).map(String.init).joined(separator: ",")
        var a = [program, "-l", lcores, "--main-lcore", String(c.eal.mainLcore),
                 "--file-prefix", c.eal.filePrefix, "--log-level", c.eal.logLevel]
        if c.eal.hugepages {
            a += ["-m", String(c.eal.memoryMB)]
        } else {
            // No hugepages: anonymous memory. memif copy mode keeps its regions in memfd, so it still works.
            a += ["--no-huge", "-m", String(c.eal.memoryMB)]
        }
        // PCI: only the devices the configuration names. Without an allow
        // list EAL would probe every PCI NIC a DPDK driver can take.
        let pci = c.interfaces.compactMap { $0.type == .pci ? $0.pci.flatMap(normalizedPCI) : nil }
        a += pci.isEmpty ? ["--no-pci"] : pci.flatMap { ["-a", $0] }
        return a + c.eal.extraArgs
    }

    public static func dataplaneSettings(_ c: WeftConfig) -> DataplaneSettings {
        var s = DataplaneSettings(workerLcores: c.dataplane.workers.map { UInt32($0) })
        s.mbufs = UInt32(c.dataplane.mbufs)
        s.mbufCache = UInt32(c.dataplane.mbufCache)
        s.burst = UInt16(c.dataplane.burstSize)
        s.rxDescriptors = UInt16(c.dataplane.rxDescriptors)
        s.txDescriptors = UInt16(c.dataplane.txDescriptors)
        s.maxCrossConnects = UInt32(c.dataplane.maxCrossConnects)
        s.idleSleepMicroseconds = UInt32(c.dataplane.idleSleepUs)
        s.queuesSleep = c.dataplane.queuesSleep
        s.puntRate = UInt32(clamping: max(0, c.dataplane.puntRate))
        return s
    }
}
