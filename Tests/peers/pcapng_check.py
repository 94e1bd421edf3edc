#!/usr/bin/env python3
"""Read a pcapng file block by block and describe it as JSON (Weft's tests).

    pcapng_check.py FILE

Checks the structure itself (block lengths repeated at both ends, a Section
Header with the byte-order magic first, Enhanced Packet Blocks naming a
described interface) and prints: interfaces (name, link type, snap length,
timestamp resolution), packets (count, by direction from epb_flags), whether
timestamps never go back, the first and last timestamps (ns), and the
captured/original lengths. Exits 1 with the reason if the file is malformed.
"""
import json
import struct
import sys


def options(buf):
    out = {}
    i = 0
    while i + 4 <= len(buf):
        code, n = struct.unpack_from("<HH", buf, i)
        if code == 0:
            break
        out.setdefault(code, []).append(buf[i + 4:i + 4 + n])
        i += 4 + (n + 3) // 4 * 4
    return out


def main(path):
    data = open(path, "rb").read()
    i, ifs, pkts = 0, [], []
    if len(data) < 28 or struct.unpack_from("<I", data, 0)[0] != 0x0A0D0D0A:
        sys.exit("not a pcapng file (no Section Header Block first)")
    while i < len(data):
        if i + 12 > len(data):
            sys.exit("truncated block at %d" % i)
        btype, blen = struct.unpack_from("<II", data, i)
        if blen < 12 or blen % 4 or i + blen > len(data):
            sys.exit("bad block length %d at %d" % (blen, i))
        if struct.unpack_from("<I", data, i + blen - 4)[0] != blen:
            sys.exit("block at %d: trailing length differs" % i)
        body = data[i + 8:i + blen - 4]
        if btype == 0x0A0D0D0A:
            if struct.unpack_from("<I", body, 0)[0] != 0x1A2B3C4D:
                sys.exit("bad byte-order magic")
        elif btype == 1:
            link, _, snap = struct.unpack_from("<HHI", body, 0)
            o = options(body[8:])
            res = o.get(9, [b"\x06"])[0][0]
            ifs.append({"name": o.get(2, [b""])[0].decode(), "link": link, "snaplen": snap, "tsresol": res})
        elif btype == 6:
            ifid, hi, lo, cap, orig = struct.unpack_from("<IIIII", body, 0)
            if ifid >= len(ifs):
                sys.exit("packet names interface %d, not described" % ifid)
            o = options(body[20 + (cap + 3) // 4 * 4:])
            flags = struct.unpack("<I", o[2][0])[0] if 2 in o else 0
            pkts.append({"ts": hi << 32 | lo, "cap": cap, "orig": orig, "dir": ["", "in", "out", ""][flags & 3],
                         "eth_type": body[20 + 12:20 + 14].hex()})
        i += blen
    ts = [p["ts"] for p in pkts]
    print(json.dumps({
        "interfaces": ifs,
        "packets": len(pkts),
        "in": sum(1 for p in pkts if p["dir"] == "in"),
        "out": sum(1 for p in pkts if p["dir"] == "out"),
        "monotonic": all(a <= b for a, b in zip(ts, ts[1:])),
        "first_ns": ts[0] if ts else 0,
        "last_ns": ts[-1] if ts else 0,
        "truncated": sum(1 for p in pkts if p["cap"] < p["orig"]),
        "max_orig": max((p["orig"] for p in pkts), default=0),
    }))


main(sys.argv[1])
