#!/usr/bin/python3
"""Crafted bad VXLAN input for Weft's system test, built with scapy.

    vxlan_probe.py IFACE SRC_IP DST_IP DST_MAC VNI SPOOFED_SRC

Sends, toward DST_IP (Weft's tunnel address), one frame of each kind that
must be dropped, and prints "sent N":
  truncated  the UDP and IP lengths claim 40 bytes more than the frame holds
  bad-flags  VXLAN header without the I flag
  wrong-vni  a VNI no tunnel uses
  spoofed    the right VNI from a source address that is not the tunnel's remote
  runt       an IPv4 frame too short for an IPv4 header
"""
import sys

from scapy.all import IP, UDP, VXLAN, Ether, Raw, conf, sendp

iface, src, dst, dmac, vni, spoofed = sys.argv[1:7]
vni = int(vni)
conf.verb = 0
inner = Ether(src="02:00:00:00:00:aa", dst="ff:ff:ff:ff:ff:ff") / IP(src="10.91.0.9", dst="10.91.0.1") / Raw(b"x" * 40)


def vx(s, v, flags=0x08):
    return Ether(dst=dmac) / IP(src=s, dst=dst) / UDP(sport=50000, dport=4789) / VXLAN(flags=flags, vni=v) / inner


truncated = vx(src, vni)
truncated[IP].len = len(truncated[IP]) + 40
truncated[UDP].len = len(truncated[UDP]) + 40
frames = [
    truncated,
    vx(src, vni, flags=0x00),
    vx(src, vni + 12345),
    vx(spoofed, vni),
    Ether(dst=dmac, type=0x0800) / Raw(b"\x45\x00"),
]
sendp(frames, iface=iface)
print(f"sent {len(frames)}")
