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
        // PCI: EAL probes no device at init. Without an allow list it would probe
        // every PCI NIC a DPDK driver can take; with --no-pci it would never scan
        // the bus, and no device could be added later. So the allow list names one
        // address no machine has (domain ffff), and each pci interface's device is
        // probed by its attach, with its devargs, after weftd bound it to its driver:
        // one path at start, at reload and at runtime, and a failure leaves no
        // device held by DPDK.
        a += ["-a", EALArguments.noPCIDevice]
        return a + c.eal.extraArgs
    }

    /// The allow list's one entry: an address in a PCI domain no machine has.
    public static let noPCIDevice = "ffff:ff:1f.7"

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
