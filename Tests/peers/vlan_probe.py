#!/usr/bin/python3
"""Trunk-side probes for Weft's VLAN system test, built with scapy.

    vlan_probe.py ping IFACE VLAN_ID SRC_IP SRC_MAC DST_IP COUNT
        ARP for DST_IP and send COUNT ICMP echo requests, all tagged VLAN_ID;
        print "received N" counting replies that came back tagged VLAN_ID.
    vlan_probe.py junk IFACE DST_MAC
        send frames that must be dropped: 3 with an unknown VLAN id (200) and
        3 with an 802.1ad outer tag (QinQ). Prints "sent 6". (Runts cannot be
        sent this way: the receiving kernel drops a cut-short tag itself; the
        stage tests cover them.)
"""
import sys

from scapy.all import ARP, ICMP, IP, Dot1AD, Dot1Q, Ether, conf, srp, srp1

conf.verb = 0
cmd = sys.argv[1]

if cmd == "ping":
    iface, vid, src, smac, dst, count = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
    arp = srp1(Ether(dst="ff:ff:ff:ff:ff:ff", src=smac) / Dot1Q(vlan=vid) /
               ARP(op=1, hwsrc=smac, psrc=src, pdst=dst), iface=iface, timeout=3, retry=2)
    if arp is None or Dot1Q not in arp or arp[Dot1Q].vlan != vid:
        print("received 0 (no tagged ARP reply)")
        sys.exit(0)
    received = 0
    for seq in range(count):
        r = srp1(Ether(dst=arp[ARP].hwsrc, src=smac) / Dot1Q(vlan=vid) /
                 IP(src=src, dst=dst) / ICMP(id=0x77, seq=seq) / (b"weft" * 8), iface=iface, timeout=2)
        if r is not None and Dot1Q in r and r[Dot1Q].vlan == vid and ICMP in r and r[ICMP].type == 0:
            received += 1
    print(f"received {received}")
elif cmd == "junk":
    iface, dmac = sys.argv[2], sys.argv[3]
    from scapy.all import sendp
    base = IP(src="10.89.1.1", dst="10.89.1.2") / ICMP()
    frames = [Ether(dst=dmac) / Dot1Q(vlan=200) / base for _ in range(3)]
    frames += [Ether(dst=dmac) / Dot1AD(vlan=10) / Dot1Q(vlan=100) / base for _ in range(3)]
    sendp(frames, iface=iface)
    print(f"sent {len(frames)}")
