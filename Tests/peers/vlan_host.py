#!/usr/bin/python3
"""An IPv4 host on one 802.1Q VLAN, built with scapy, for Weft's system tests.

This machine's kernel has no 802.1Q support (CONFIG_VLAN_8021Q is not set), so
a VLAN sub-interface cannot be the peer. This process is the independent
802.1Q implementation instead: on a raw interface it answers ARP and ICMP echo
for its address, only on frames tagged with its VLAN id, and replies tagged.

    vlan_host.py IFACE VLAN_ID IPV4 MAC
"""
import sys

from scapy.all import ARP, ICMP, IP, Dot1Q, Ether, conf, sendp, sniff

iface, vid, ip, mac = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
conf.verb = 0
out = conf.L2socket(iface=iface)


def handle(p):
    if Dot1Q not in p or p[Dot1Q].vlan != vid or p.src == mac:
        return
    if ARP in p and p[ARP].op == 1 and p[ARP].pdst == ip:
        out.send(Ether(dst=p.src, src=mac) / Dot1Q(vlan=vid) /
                 ARP(op=2, hwsrc=mac, psrc=ip, hwdst=p[ARP].hwsrc, pdst=p[ARP].psrc))
    elif IP in p and ICMP in p and p[IP].dst == ip and p[ICMP].type == 8:
        out.send(Ether(dst=p.src, src=mac) / Dot1Q(vlan=vid) /
                 IP(src=ip, dst=p[IP].src) /
                 ICMP(type=0, id=p[ICMP].id, seq=p[ICMP].seq) / p[ICMP].payload)


print("ready", flush=True)
sniff(iface=iface, prn=handle, store=False)
