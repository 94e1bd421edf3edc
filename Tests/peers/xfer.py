#!/usr/bin/env python3
"""Content-checked TCP and UDP transfers for Weft's system tests.

  xfer.py serve tcp|udp ADDR PORT [--expect N] [--timeout S]
      Listen, receive, print one JSON line: bytes, sha256, datagrams (udp),
      out-of-order/duplicate datagrams (udp).
  xfer.py send tcp|udp ADDR PORT BYTES [--seed S] [--size N] [--rate PPS] [--echo]
      Send BYTES of deterministic pseudo-random data (TCP: one stream; UDP:
      datagrams of --size bytes, each with a sequence number), print the
      sha256 of what was sent.

The receiver checks content, not just counts: a frame whose payload was
changed on the way (a checksum left partial, a segment cut short, a
fragment lost) changes the digest or is missing.
"""
import hashlib
import json
import random
import socket
import struct
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def data(nbytes, seed):
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < nbytes:
        out += rnd.getrandbits(8 * 4096).to_bytes(4096, "little")
    return bytes(out[:nbytes])


def serve(proto, addr, port, expect, timeout):
    fam = family(addr)
    h = hashlib.sha256()
    total = 0
    if proto == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(timeout)
        print("ready", flush=True)
        c, _ = s.accept()
        c.settimeout(timeout)
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b)
            total += len(b)
        c.close()
        print(json.dumps({"bytes": total, "sha256": h.hexdigest()}), flush=True)
        return 0
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((addr, port))
    s.settimeout(timeout)
    print("ready", flush=True)
    chunks = {}
    dup = 0
    reordered = 0
    last = -1
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            b = s.recv(65535)
        except socket.timeout:
            break
        seq, = struct.unpack("!I", b[:4])
        if seq == 0xFFFFFFFF:  # end marker
            break
        if seq in chunks:
            dup += 1
        if seq < last:
            reordered += 1
        last = max(last, seq)
        chunks[seq] = b[4:]
        if expect and sum(len(v) for v in chunks.values()) >= expect:
            break
    for seq in sorted(chunks):
        h.update(chunks[seq])
        total += len(chunks[seq])
    print(json.dumps({"bytes": total, "sha256": h.hexdigest(), "datagrams": len(chunks),
                      "duplicates": dup, "reordered": reordered}), flush=True)
    return 0


def send(proto, addr, port, nbytes, seed, size, rate):
    payload = data(nbytes, seed)
    digest = hashlib.sha256(payload).hexdigest()
    fam = family(addr)
    if proto == "tcp":
        s = socket.create_connection((addr, port), timeout=30)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        while s.recv(4096):
            pass
        s.close()
    else:
        # Unconnected: an ICMP error from the receiver once it has everything
        # (its port closes) must not end the sender.
        s = socket.socket(fam, socket.SOCK_DGRAM)
        dst = (addr, port)
        gap = 1.0 / rate if rate else 0
        seq = 0
        t0 = time.time()
        for off in range(0, len(payload), size):
            s.sendto(struct.pack("!I", seq) + payload[off:off + size], dst)
            seq += 1
            if gap:
                delay = t0 + seq * gap - time.time()
                if delay > 0:
                    time.sleep(delay)
        for _ in range(3):
            try:
                s.sendto(struct.pack("!I", 0xFFFFFFFF), dst)
            except OSError:
                break
            time.sleep(0.05)
    print(json.dumps({"bytes": len(payload), "sha256": digest}), flush=True)
    return 0


def arg(name, default, cast=int):
    if name in sys.argv:
        return cast(sys.argv[sys.argv.index(name) + 1])
    return default


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    mode, proto, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "serve":
        return serve(proto, addr, port, arg("--expect", 0), arg("--timeout", 20.0, float))
    return send(proto, addr, port, int(sys.argv[5]), arg("--seed", 1), arg("--size", 1200), arg("--rate", 0))


if __name__ == "__main__":
    sys.exit(main())
