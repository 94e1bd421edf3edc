#!/usr/bin/python3
"""Seed corpora for Weft's fuzzers (fuzz/corpus/<target>/), built with scapy.

Each seed is a list of frames in the harnesses' input format (fuzz/common.h):
per frame a control byte (ingress port, harness flags), a split byte (first
segment length, 0: whole), a 16-bit big-endian length, metadata when the
control byte's bit 7 is set (fuzz_p2p: a 10-byte virtio-net header), then the
frame. The addresses are the harnesses' (10.0.0.1/fd00::1 on the uplink,
peers 10.0.0.2/fd00::2, ...).

    /usr/bin/python3 fuzz/gen_corpus.py      # rewrites fuzz/corpus/
"""
import os
import shutil
import struct
import sys

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1AD, Dot1Q, Ether, ICMPv6EchoRequest,
                       ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptSrcLLAddr, IPOption_Router_Alert, IPv6, Raw, VXLAN)

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = "02:00:00:00:00:02"
UP = "02:00:00:00:00:01"  # any: the uplink's own MAC is not checked on receive
BCAST = "ff:ff:ff:ff:ff:ff"
U4, P4, P4B = "10.0.0.1", "10.0.0.2", "10.0.0.3"
U6, P6 = "fd00::1", "fd00::2"
K4, KP4 = "192.168.1.1", "192.168.1.2"


def rec(frame, ctl=0, split=0, meta=b""):
    b = bytes(frame)
    if meta:
        ctl |= 0x80
    return struct.pack(">BBH", ctl, split, len(b)) + meta + b


def inner(n=0, src="02:00:00:00:01:01", dst="02:00:00:00:01:02", l4="udp"):
    ip = IP(src="172.16.0.1", dst="172.16.0.2")
    l = UDP(sport=1000, dport=2000) if l4 == "udp" else TCP(sport=1000, dport=80, flags="PA")
    return Ether(src=src, dst=dst) / ip / l / Raw(b"x" * n)


def inner6(n=0):
    return Ether(src="02:00:00:00:01:03", dst="02:00:00:00:01:04") / IPv6(src="fd01::1", dst="fd01::2") / \
        UDP(sport=1000, dport=2000) / Raw(b"y" * n)


def vx4(vni, src=P4, dst=U4, dport=4789, flags=0x08, payload=None, opts=None):
    ip = IP(src=src, dst=dst, options=opts) if opts else IP(src=src, dst=dst)
    return Ether(src=PEER, dst=UP) / ip / UDP(sport=50000, dport=dport) / \
        VXLAN(flags=flags, vni=vni) / (payload if payload is not None else inner(64))


def vx6(vni, src=P6, dst=U6, dport=8472, payload=None):
    return Ether(src=PEER, dst=UP) / IPv6(src=src, dst=dst) / UDP(sport=50001, dport=dport) / \
        VXLAN(flags=0x08, vni=vni) / (payload if payload is not None else inner(64))


def ns(target=U6, src=P6, dst="ff02::1:ff00:1", hlim=255, opt=True):
    p = Ether(src=PEER, dst="33:33:ff:00:00:01") / IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    return p / ICMPv6NDOptSrcLLAddr(lladdr=PEER) if opt else p


def uplink():
    s = {}
    # ARP
    s["arp-request"] = [rec(Ether(src=PEER, dst=BCAST) / ARP(op=1, hwsrc=PEER, psrc=P4, pdst=U4))]
    s["arp-reply-resolves"] = [rec(Ether(src=PEER, dst=UP) / ARP(op=2, hwsrc="02:00:00:00:00:03", psrc=P4B, pdst=U4))]
    s["arp-other"] = [rec(Ether(src=PEER, dst=BCAST) / ARP(op=1, hwsrc=PEER, psrc=P4, pdst="10.0.0.77"))]
    s["arp-short"] = [rec(bytes(Ether(src=PEER, dst=BCAST) / ARP(op=1, psrc=P4, pdst=U4))[:30])]
    s["arp-shared"] = [rec(Ether(src=PEER, dst=BCAST) / ARP(op=1, hwsrc=PEER, psrc=KP4, pdst=K4), ctl=1)]
    # ICMP
    s["echo4"] = [rec(Ether(src=PEER, dst=UP) / IP(src=P4, dst=U4) / ICMP() / Raw(b"ping" * 8))]
    s["echo4-options"] = [rec(Ether(src=PEER, dst=UP) / IP(src=P4, dst=U4, options=[IPOption_Router_Alert()]) / ICMP() / Raw(b"p" * 9))]
    s["echo4-shared"] = [rec(Ether(src=PEER, dst=UP) / IP(src=KP4, dst=K4) / ICMP(), ctl=1)]
    s["echo6"] = [rec(Ether(src=PEER, dst=UP) / IPv6(src=P6, dst=U6) / ICMPv6EchoRequest(data=b"ping6" * 5))]
    s["ns"] = [rec(ns())]
    s["ns-unicast"] = [rec(ns(dst=U6))]
    s["ns-dad"] = [rec(ns(src="::", opt=False))]
    s["ns-offlink"] = [rec(ns(hlim=64))]
    s["na"] = [rec(Ether(src=PEER, dst=UP) / IPv6(src=P6, dst=U6, hlim=255) / ICMPv6ND_NA(tgt=P6, R=0, S=1, O=1) /
                   ICMPv6NDOptDstLLAddr(lladdr=PEER))]
    s["ra"] = [rec(Ether(src=PEER, dst="33:33:00:00:00:01") / IPv6(src="fe80::2", dst="ff02::1", hlim=255) / ICMPv6ND_RA())]
    # VXLAN decap
    s["vxlan4"] = [rec(vx4(100))]
    s["vxlan4-unresolved-tunnel"] = [rec(vx4(101, src=P4B))]
    s["vxlan4-unknown-vni"] = [rec(vx4(999))]
    s["vxlan4-spoofed"] = [rec(vx4(100, src="10.0.0.9"))]
    s["vxlan4-bad-flags"] = [rec(vx4(100, flags=0))]
    s["vxlan4-not-vxlan-port"] = [rec(vx4(100, dport=53))]
    s["vxlan4-ip-options"] = [rec(vx4(100, opts=[IPOption_Router_Alert()]))]
    s["vxlan4-padded"] = [rec(bytes(vx4(100, payload=Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02", type=0x88b5))) + b"\0" * 6)]
    s["vxlan4-truncated"] = [rec(bytes(vx4(100))[:-20])]
    s["vxlan4-jumbo-chain"] = [rec(vx4(100, payload=inner(3000)))]
    s["vxlan4-split-ip"] = [rec(vx4(100), split=30)]
    s["vxlan4-split-udp"] = [rec(vx4(100), split=38)]
    s["vxlan4-split-inner"] = [rec(vx4(100), split=60)]
    s["vxlan6"] = [rec(vx6(200))]
    s["vxlan6-split"] = [rec(vx6(200), split=56)]
    s["vxlan6-wrong-port"] = [rec(vx6(200, dport=4789))]
    s["vxlan4-shared"] = [rec(vx4(300, src=KP4, dst=K4), ctl=1)]
    s["udp-to-shared-host"] = [rec(Ether(src=PEER, dst=UP) / IP(src=KP4, dst=K4) / UDP(dport=53) / Raw(b"q" * 20), ctl=1)]
    # VLANs
    s["vlan100"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100) / IP(src="172.16.0.1", dst="172.16.0.2") / UDP() / Raw(b"v" * 40))]
    s["vlan-unknown"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=101) / IP() / UDP())]
    s["vlan-priority"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=0, prio=5) / IP() / UDP())]
    s["vlan-4095"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=4095) / IP() / UDP())]
    s["qinq-8100"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100) / Dot1Q(vlan=5) / IP() / UDP())]
    s["qinq-88a8"] = [rec(Ether(src=PEER, dst=UP) / Dot1AD(vlan=100) / Dot1Q(vlan=5) / IP() / UDP())]
    s["vlan-runt"] = [rec(bytes(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100))[:16])]
    s["vlan200-shared"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=200) / IP() / UDP(), ctl=1)]
    s["untagged-raw"] = [rec(inner(50))]
    s["runt"] = [rec(b"\x02\x00\x00\x00")]
    # pods -> uplink (VLAN push, VXLAN encap)
    for ctl, name in ((2, "podv"), (3, "pod0"), (4, "pod4"), (5, "pod6"), (6, "pod5"), (7, "podk"), (8, "pod7")):
        s["from-" + name] = [rec(inner(100), ctl=ctl)]
        s["from-" + name + "-tcp6"] = [rec(inner6(200), ctl=ctl, split=20)]
    s["from-pod4-jumbo"] = [rec(inner(1600), ctl=4)]
    s["from-pod6-chain-odd"] = [rec(inner(2500), ctl=5, split=33)]
    s["from-podv-runt"] = [rec(b"\x02\x00\x00\x00\x00\x01\x02", ctl=2)]
    # bursts
    s["burst-mixed"] = [rec(vx4(100)), rec(vx6(200)), rec(ns()),
                        rec(Ether(src=PEER, dst=BCAST) / ARP(op=1, hwsrc=PEER, psrc=P4, pdst=U4)),
                        rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100) / IP() / UDP()), rec(inner(10)),
                        rec(inner(300), ctl=4), rec(inner(300), ctl=5)]
    # more connections in one burst than the uplink batches (wf_send_mixed)
    s["burst-many-vlans"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=v) / IP() / UDP() / Raw(b"m" * 20))
                             for v in [100] + list(range(101, 109))] + [rec(vx4(100)), rec(vx6(200)), rec(inner(30))]
    s["burst-many-vlans-offsets"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=v) / IP() / UDP() / Raw(b"m" * 20), split=15)
                                     for v in range(101, 109)] + [rec(vx4(101, src=P4B)), rec(b"\x01" * 5)]
    return s


def bridge():
    A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"
    SA, SB = "02:00:00:00:00:aa", "02:00:00:00:00:bb"

    def e(src, dst, n=46):
        return Ether(src=src, dst=dst) / IP(src="172.16.0.1", dst="172.16.0.2") / UDP() / Raw(b"b" * n)

    def v(src, dst, n=46):
        return Ether(src=src, dst=dst) / Dot1Q(vlan=10) / IP() / UDP() / Raw(b"v" * n)
    s = {}
    s["flood-learn-unicast"] = [rec(e(A, BCAST), ctl=0), rec(e(B, A), ctl=1), rec(e(A, B), ctl=0)]
    s["split-horizon"] = [rec(e(C, BCAST), ctl=2), rec(e(D, C), ctl=3), rec(e(C, D), ctl=2)]
    s["own-member"] = [rec(e(A, BCAST), ctl=0), rec(e(B, A), ctl=0)]
    s["static"] = [rec(e(A, SA), ctl=1), rec(e(A, SB), ctl=2), rec(e(SA, B), ctl=3)]
    s["vlan-member"] = [rec(v(C, BCAST), ctl=4), rec(e(A, C), ctl=0), rec(v(C, A), ctl=4)]
    s["vlan-member-wrong-vlan"] = [rec(Ether(src=C, dst=A) / Dot1Q(vlan=11) / IP() / UDP(), ctl=4)]
    s["move"] = [rec(e(A, BCAST), ctl=0), rec(e(A, BCAST), ctl=1), rec(e(B, A), ctl=2)]
    s["multicast"] = [rec(e(A, "01:00:5e:00:00:01"), ctl=0), rec(e("03:00:00:00:00:01", A), ctl=1)]
    s["mac-limit"] = [rec(e("02:00:00:00:10:%02x" % i, BCAST, 10), ctl=i % 4) for i in range(8)]
    s["runt"] = [rec(b"\x02" * 13, ctl=0), rec(e(A, B), ctl=1)]
    s["chain"] = [rec(e(A, B, 3000), ctl=0, split=20), rec(e(B, A, 2100), ctl=1)]
    s["ipv6"] = [rec(Ether(src=A, dst="33:33:00:00:00:01") / IPv6() / UDP() / Raw(b"6" * 30), ctl=0)]
    macs = [A, B, C, D, "02:00:00:00:00:0e"]
    for i in range(5):
        s["bcast-from-%d" % i] = [rec(e(macs[i], BCAST), ctl=i)]
        s["arp-from-%d" % i] = [rec(Ether(src=macs[i], dst=BCAST) / ARP(psrc="172.16.0.%d" % (i + 1), pdst="172.16.0.9"), ctl=i)]
        # learn everyone, then unicast to the next member
        s["all-then-%d" % i] = [rec(e(macs[j], BCAST, 8), ctl=j) for j in range(5)] + \
            [rec(e(macs[i], macs[(i + 1) % 5]), ctl=i), rec(e(macs[(i + 1) % 5], macs[i]), ctl=(i + 1) % 5)]
    s["vlan-member-static"] = [rec(v(C, SB), ctl=4), rec(e(A, SB), ctl=0)]
    s["vlan-member-qinq"] = [rec(Ether(src=C, dst=A) / Dot1Q(vlan=10) / Dot1Q(vlan=11) / IP(), ctl=4)]
    s["vlan-member-runt"] = [rec(bytes(v(C, A))[:17], ctl=4)]
    s["to-vlan-member-runt"] = [rec(v(C, BCAST), ctl=4), rec(bytes(e(A, C))[:13], ctl=0)]
    return s


def replicate():
    s = {}
    s["small"] = [rec(inner(20), ctl=0)]
    s["clone-size"] = [rec(inner(400), ctl=0)]
    s["both"] = [rec(inner(20), ctl=0), rec(inner(400), ctl=0), rec(inner(1600), ctl=0)]
    s["chain"] = [rec(inner(3000), ctl=0, split=40)]
    s["from-members"] = [rec(inner(60), ctl=1), rec(inner(300), ctl=2)]
    s["from-vlan-member"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=300) / IP() / UDP() / Raw(b"r" * 30), ctl=3)]
    s["from-vxlan-member"] = [rec(vx4(100), ctl=3)]
    s["uplink-arp"] = [rec(Ether(src=PEER, dst=BCAST) / ARP(op=1, hwsrc=PEER, psrc=P4, pdst=U4), ctl=3)]
    s["uplink-echo"] = [rec(Ether(src=PEER, dst=UP) / IP(src=P4, dst=U4) / ICMP() / Raw(b"p" * 30), ctl=3)]
    s["uplink-ns"] = [rec(ns(), ctl=3)]
    s["runt"] = [rec(b"\x01\x02\x03", ctl=0), rec(b"", ctl=0)]
    s["ipv6"] = [rec(inner6(100), ctl=0, split=17)]
    for n in (0, 13, 14, 60, 127, 128, 129, 1450, 1500, 2048, 4000):
        s["size-%d" % n] = [rec(bytes(inner(1500))[:n] if n < 42 else inner(n - 42), ctl=0)]
    s["chain-odd"] = [rec(inner(2500), ctl=0, split=33)]
    s["vxlan6-uplink"] = [rec(vx6(200, dport=4789), ctl=3)]
    s["vlan-other"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=301) / IP() / UDP(), ctl=3)]
    s["members-burst"] = [rec(inner(100), ctl=i % 4) for i in range(8)]
    s["csum-tcp4"] = [rec(tcp4(300), ctl=0, meta=vnet(1, 0, 0, 0, 34, 16))]
    s["csum-udp6"] = [rec(udp6(200), ctl=0, meta=vnet(1, 0, 0, 0, 54, 6))]
    s["tso4"] = [rec(tcp4(4000), ctl=0, meta=vnet(1, 1, 54, 1448, 34, 16))]
    s["uso6"] = [rec(udp6(3000), ctl=0, split=70, meta=vnet(1, 5, 62, 1000, 54, 6))]
    s["tso4-from-member"] = [rec(tcp4(3000), ctl=1, meta=vnet(1, 1, 54, 1000, 34, 16))]
    return s


def vnet(flags=1, gso=0, hdr_len=0, gso_size=0, start=0, off=0):
    # struct virtio_net_hdr, host (little-endian) order as AF_PACKET gives it
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, start, off)


def tcp4(n, mss=None):
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src="172.16.0.1", dst="172.16.0.2") / \
        TCP(sport=1000, dport=80, flags="PA", seq=1000) / Raw(bytes(range(256)) * (n // 256) + b"z" * (n % 256))


def tcp6(n):
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IPv6(src="fd01::1", dst="fd01::2") / \
        TCP(sport=1000, dport=80, flags="PA") / Raw(b"t" * n)


def udp4(n):
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IP(src="172.16.0.1", dst="172.16.0.2") / \
        UDP(sport=1000, dport=2000) / Raw(b"u" * n)


def udp6(n):
    return Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / IPv6(src="fd01::1", dst="fd01::2") / \
        UDP(sport=1000, dport=2000) / Raw(b"u" * n)


def p2p():
    VIRTIO_GSO_TCPV4, VIRTIO_GSO_UDP, VIRTIO_GSO_TCPV6, VIRTIO_GSO_UDP_L4, ECN = 1, 3, 4, 5, 0x80
    s = {}
    ports = {"a": 0, "b": 1, "g": 2, "k": 3, "c": 4, "d": 5, "e": 6}
    s["plain"] = [rec(udp4(100), ctl=0), rec(udp4(100), ctl=1)]
    s["plain-jumbo"] = [rec(udp4(3000), ctl=0, split=100), rec(udp4(1600), ctl=1)]
    for name, ctl in ports.items():
        s["csum-tcp4-" + name] = [rec(tcp4(300), ctl=ctl, meta=vnet(1, 0, 0, 0, 34, 16))]
        s["csum-udp6-" + name] = [rec(udp6(301), ctl=ctl, meta=vnet(1, 0, 0, 0, 54, 6))]
        s["tso4-" + name] = [rec(tcp4(4000), ctl=ctl, meta=vnet(1, VIRTIO_GSO_TCPV4, 54, 1448, 34, 16))]
        s["tso6-" + name] = [rec(tcp6(3000), ctl=ctl, split=90, meta=vnet(1, VIRTIO_GSO_TCPV6, 74, 1000, 54, 16))]
        s["uso4-" + name] = [rec(udp4(3001), ctl=ctl, meta=vnet(1, VIRTIO_GSO_UDP_L4, 42, 1200, 34, 6))]
    s["csum-odd-place"] = [rec(udp4(99), ctl=0, meta=vnet(1, 0, 0, 0, 35, 3))]
    s["csum-outside"] = [rec(udp4(20), ctl=0, meta=vnet(1, 0, 0, 0, 200, 16))]
    s["gso-no-csum"] = [rec(tcp4(2000), ctl=0, meta=vnet(0, VIRTIO_GSO_TCPV4, 54, 1000, 34, 16))]
    s["gso-ecn"] = [rec(tcp4(2000), ctl=0, meta=vnet(1, VIRTIO_GSO_TCPV4 | ECN, 54, 500, 34, 16))]
    s["ufo"] = [rec(udp4(2000), ctl=0, meta=vnet(1, VIRTIO_GSO_UDP, 42, 1000, 34, 6))]
    s["tso-tiny-mss"] = [rec(tcp4(600), ctl=1, meta=vnet(1, VIRTIO_GSO_TCPV4, 54, 7, 34, 16))]
    s["tso-vlan-tag"] = [rec(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / Dot1Q(vlan=7) /
                             IP(src="172.16.0.1", dst="172.16.0.2") / TCP(flags="A") / Raw(b"w" * 3000),
                             ctl=0x40, meta=vnet(1, VIRTIO_GSO_TCPV4, 54, 1400, 34, 16))]
    # offloads through VLAN pop and VXLAN decap on the uplink (ctl 7)
    s["uplink-vlan-csum"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100) / IP(src="172.16.0.1", dst="172.16.0.2") /
                                 TCP() / Raw(b"q" * 200), ctl=7, meta=vnet(1, 0, 0, 0, 38, 16))]
    s["uplink-vlan-tso"] = [rec(Ether(src=PEER, dst=UP) / Dot1Q(vlan=100) / IP(src="172.16.0.1", dst="172.16.0.2") /
                                TCP() / Raw(b"q" * 3000), ctl=7, meta=vnet(1, VIRTIO_GSO_TCPV4, 58, 1400, 38, 16))]
    s["uplink-vxlan-inner-csum"] = [rec(vx4(100, payload=tcp4(200)), ctl=7, meta=vnet(1, 0, 0, 0, 84, 16))]
    s["uplink-vxlan-outer-csum"] = [rec(vx4(100, payload=tcp4(200)), ctl=7, meta=vnet(1, 0, 0, 0, 34, 6))]
    s["uplink-vxlan6"] = [rec(vx6(200, payload=udp6(500)), ctl=7)]
    s["uplink-echo"] = [rec(Ether(src=PEER, dst=UP) / IP(src=P4, dst=U4) / ICMP() / Raw(b"p" * 30), ctl=7)]
    s["mixed-burst"] = [rec(udp4(100), ctl=0), rec(tcp4(3000), ctl=0, meta=vnet(1, VIRTIO_GSO_TCPV4, 54, 1000, 34, 16)),
                        rec(udp4(100), ctl=5), rec(udp6(2000), ctl=6, meta=vnet(1, VIRTIO_GSO_UDP_L4, 62, 700, 54, 6))]
    return s


def memif():
    """fuzz_memif's operations (fuzz/fuzz_memif.c): a peer's writes and Weft's bursts."""
    u16 = lambda v: struct.pack("<H", v & 0xFFFF)
    u32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)

    def desc(rx, slot, flags, region, off, length):
        # op 0; bits 16/32/64: 16-bit region, 32-bit offset, 32-bit length
        return bytes([0 | (0 if rx else 8) | 16 | 32 | 64, slot & 0xFF, flags]) + u16(region) + u32(off) + u32(length)

    def produce(n):  # op 1: the RX producer moves by n
        return bytes([1, n])

    def produce_at(v):
        return bytes([1 | 8]) + u16(v)

    def rx(n):
        return bytes([2, n - 1])

    def tx(frames):  # op 3: (length, first-segment length, seed) per frame
        return bytes([3, len(frames) - 1]) + b"".join(u16(l - 1) + u16(f) + bytes([sd]) for l, f, sd in frames)

    def post(n):  # op 4: the TX consumer index moves by n
        return bytes([4, n])

    def server(log2=4, first=0, bufs=2048, regions=(2000,)):
        hdr = bytes([0, log2 - 1]) + u16(first) + bytes([len(regions) - 1]) + u16(bufs // 4)
        return hdr + b"".join(u16(r // 2) for r in regions)

    def client(log2=4, first=0, bufshift=5, ip=False):
        return bytes([1 | (2 if ip else 0), log2 - 1]) + u16(first) + bytes([bufshift])

    rings = lambda log2: 2 * (128 + 16 * (1 << log2))
    base = rings(4)  # the peer's buffers in region 0 start after the rings
    s = {}
    s["server-one-frame"] = server() + desc(True, 0, 0, 0, base, 60) + produce(1) + rx(32)
    s["server-chain"] = (server() + desc(True, 0, 1, 0, base, 100) + desc(True, 1, 1, 0, base + 100, 100) +
                         desc(True, 2, 0, 1, 0, 1000) + produce(3) + rx(8))
    s["server-chain-unfinished"] = (server() + desc(True, 0, 1, 0, base, 100) + produce(1) + rx(8) +
                                    desc(True, 1, 0, 0, base + 100, 50) + produce(1) + rx(8))
    s["server-runt-then-frame"] = (server() + desc(True, 0, 0, 0, base, 10) + desc(True, 1, 0, 0, base, 64) +
                                   produce(2) + rx(4))
    s["server-bad-region"] = server() + desc(True, 0, 0, 5, 0, 64) + produce(1) + rx(4) + rx(4)
    s["server-outside"] = server() + desc(True, 0, 0, 0, base + 2040, 64) + produce(1) + rx(4)
    s["server-index-jump"] = server() + produce_at(40000) + rx(4)
    s["server-wrap"] = server(first=0xFFFE) + desc(True, 0xFE, 0, 0, base, 64) + desc(True, 0xFF, 0, 0, base, 64) + \
        desc(True, 0, 0, 0, base, 64) + produce(3) + rx(32)
    s["server-desc-into-ring"] = server() + desc(True, 0, 0, 0, 128, 64) + produce(1) + rx(4)
    s["server-tx"] = (server() + desc(False, 0, 0, 0, base, 2048) + desc(False, 1, 0, 1, 0, 2000) + post(2) +
                      tx([(60, 0, 1), (1500, 0, 2)]))
    s["server-tx-chain"] = (server(regions=(2000, 4000)) + desc(False, 0, 0, 0, base, 1000) +
                            desc(False, 1, 0, 1, 0, 1000) + desc(False, 2, 0, 1, 1000, 3000) + post(3) +
                            tx([(4000, 700, 3)]))
    s["server-tx-full"] = server() + desc(False, 0, 0, 0, base, 2048) + post(1) + tx([(60, 0, 1), (60, 0, 2)])
    s["server-tx-bad"] = server() + desc(False, 0, 0, 3, 0, 100) + post(1) + tx([(60, 0, 1)]) + tx([(60, 0, 1)])
    s["server-tx-into-ring"] = server() + desc(False, 0, 0, 0, 0, 600) + post(1) + tx([(500, 0, 9)])
    s["client-rx"] = client() + bytes([1, 2]) + rx(4)  # op 1 on a client moves the server's tail
    s["client-rx-long"] = client() + desc(True, 0, 0, 0, 0, 4000) + produce(1) + rx(4)
    s["client-tx"] = client() + post(0) + tx([(1400, 0, 4), (3000, 1000, 5)]) + post(16) + tx([(60, 0, 6)])
    s["client-ip"] = client(ip=True) + desc(True, 0, 0, 0, 0, 20) + produce(1) + rx(4)
    s["arm"] = server() + bytes([6]) + desc(True, 0, 0, 0, base, 60) + produce(1) + bytes([6]) + rx(4) + bytes([6])
    s["no-mbufs"] = (server() + bytes([7, 1]) + desc(True, 0, 1, 0, base, 2000) + desc(True, 1, 0, 1, 0, 1900) +
                     produce(2) + rx(4) + bytes([7, 0]) + desc(True, 2, 0, 0, base, 60) + produce(1) + rx(4))
    return s


def main():
    gens = {"uplink": uplink, "bridge": bridge, "replicate": replicate, "p2p": p2p, "memif": memif}
    for target, gen in gens.items():
        d = os.path.join(HERE, "corpus", target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        seeds = gen()
        for name, frames in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(frames if isinstance(frames, bytes) else b"".join(frames))
        print(f"{target}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
