#!/usr/bin/env python3
"""A seeded fuzzer of weftd's admin socket (one JSON request line, one JSON answer line).

    fuzz_admin.py --socket PATH --pid PID [--seed N] [--count N]

Each case is a request of every command weftctl sends, mutated, or a misbehaving client:
wrong types, unknown commands and fields, huge and deeply nested JSON, NULs, invalid UTF-8,
several lines in one write, no newline before closing, a half-closed socket, connect-and-close,
lines over the server's 1 MiB limit, a client that stops writing for a moment. Requests that
would change the node are made invalid (names that do not exist, values out of range), so
every one of them must be refused.

Invariants, per case: the answer is one JSON object with a boolean "ok" and, when false, a
non-empty "error" (or, for a client that never finished its line, the server closes); no
mutating request is accepted; weftd is alive; its interfaces and connections are as they
were at the start. One JSON line per failure and a summary line; exit 1 on any failure.
"""
import argparse
import json
import os
import random
import socket
import sys
import time

READS = ["show-interfaces", "show-cross-connects", "show-drops", "show-workers", "show-neighbours",
         "show-groups", "trace-show", "capture-status"]
WRITES = ["connect", "disconnect", "add-interface", "delete-interface", "add-cross-connect",
          "delete-cross-connect", "trace-start", "capture-start"]
TYPES = ["memif", "af_packet", "af_xdp", "kernel", "tap", "pci", "null", "ring", "vdev", "vlan", "vxlan"]


def talk(path, data, shut=False, pause=0.0, timeout=15.0):
    """Send bytes; return (answer bytes, closed-without-answer)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        if pause:
            s.sendall(data[: len(data) // 2])
            time.sleep(pause)
            s.sendall(data[len(data) // 2:])
        elif data:
            s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while b"\n" not in buf:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            buf += chunk
        return buf
    except (BrokenPipeError, ConnectionResetError):
        return b""
    finally:
        s.close()


def state(path):
    out = {}
    for cmd in ("show-interfaces", "show-cross-connects", "show-groups"):
        a = json.loads(talk(path, json.dumps({"command": cmd}).encode() + b"\n"))
        for k in ("interfaces", "crossConnects", "groups"):
            if k in a:
                # Names and what joins them; counters move with traffic.
                out[k] = sorted(json.dumps({x: v for x, v in e.items() if x in ("name", "type", "a", "b", "mode", "ingress")},
                                           sort_keys=True) for e in a[k])
    return out


def junk(r):
    return r.choice([None, 0, -1, 2**63, 1.5, True, "", "x" * r.randint(1, 300), "é\u0000ñ", [], {}, [1, "a"],
                     {"a": {"b": []}}, "../../etc/passwd", "\ud7ff", "%d%n%s"])


def invalid_write(r):
    cmd = r.choice(WRITES)
    ghost = "zz-%x" % r.getrandbits(32)
    req = {"command": cmd}
    if cmd == "connect":
        req.update(name=ghost, members=r.choice([[], [ghost], [ghost, ghost + "b"], ["a"] * 300]),
                   labels=r.choice([{"p2mp": "nonsense"}, {"p2mp": "bridge"}, {}, {"x" * 500: "y"}]))
    elif cmd in ("disconnect", "delete-interface", "delete-cross-connect"):
        req["name"] = r.choice([ghost, "", "\u0000", "x" * 5000])
    elif cmd == "add-interface":
        itf = {"name": r.choice([ghost, "", "bad name!", "x" * 100]), "type": r.choice(TYPES + ["bogus", ""])}
        for k in r.sample(["iface", "socket", "pci", "devargs", "mtu", "rx_queues", "vlan_id", "vni", "remote", "uplink", "id", "mac"],
                          r.randint(1, 4)):
            itf[k] = r.choice([junk(r), "zz-none-%d" % r.randint(0, 9), -5, 70000, "::1", "0000:99:99.9"])
        # Something that can never be realized: an uplink that does not exist, or an unknown key.
        itf[r.choice(["uplink", "no_such_key"])] = ghost
        req["interface"] = itf
    elif cmd == "add-cross-connect":
        req["crossConnect"] = {"name": ghost, "a": r.choice([ghost, "a"]), "b": ghost + "b"}
    elif cmd == "trace-start":
        req.update(name=r.choice([ghost, None]), count=r.choice([0, -1, 5000, 2**40]))
        if req["name"] is not None and r.random() < 0.5:
            req["count"] = 1  # a valid count for an interface that does not exist
    elif cmd == "capture-start":
        req["capture"] = r.choice([
            {"interface": ghost, "path": "/tmp/wt-fuzz-admin-%x.pcapng" % r.getrandbits(32)},
            {"interface": "a", "path": "relative.pcapng"},
            {"interface": "a", "path": "/proc/wt-no/such/dir/x.pcapng"},
            {"interface": "a", "path": "/tmp/x.pcapng", "direction": "sideways"},
            {"interface": "a", "path": "/tmp/x.pcapng", "filter": "tcp and and (", "count": 1},
            {"interface": "a", "path": "/tmp/x.pcapng", "snaplen": 10},
            {"interface": "a", "path": "/tmp/x.pcapng", "seconds": -4},
            {"interface": "a"},
        ])
    # Sometimes a field of the wrong type on top (not where null means a default that
    # would make the request valid: trace-start's count).
    if r.random() < 0.3 and cmd != "trace-start":
        req[r.choice(["name", "members", "labels", "count", "interface", "crossConnect", "capture"])] = junk(r)
    return req


def case(r, i):
    """(bytes to send, send options, what is allowed: 'answer' | 'answer-or-close', mutating)."""
    kind = r.choice(["read", "read", "write", "write", "typo", "raw", "lines", "nonl", "halfclose", "empty",
                     "deep", "huge", "over", "nul", "utf8", "slow"])
    if kind == "read":
        req = {"command": r.choice(READS)}
        if r.random() < 0.5:
            req[r.choice(["name", "count", "junk", "members"])] = junk(r)
        return json.dumps(req).encode() + b"\n", {}, "answer", False, kind
    if kind == "write":
        return json.dumps(invalid_write(r)).encode() + b"\n", {}, "answer", True, kind
    if kind == "typo":
        c = list(r.choice(READS + WRITES))
        k = r.randrange(len(c))
        c[k] = r.choice([x for x in map(chr, range(32, 0x2FF)) if x != c[k]])
        return json.dumps({"command": "".join(c)}).encode() + b"\n", {}, "answer", True, kind
    if kind == "raw":
        return bytes(r.getrandbits(8) for _ in range(r.randint(1, 400))) + b"\n", {}, "answer-or-close", True, kind
    if kind == "lines":
        lines = b"".join(json.dumps({"command": r.choice(READS)}).encode() + b"\n" for _ in range(r.randint(2, 20)))
        return lines, {}, "answer", False, kind
    if kind == "nonl":
        return json.dumps({"command": r.choice(READS)}).encode(), {"shut": True}, "answer-or-close", False, kind
    if kind == "halfclose":
        return b"", {"shut": True}, "answer-or-close", False, kind
    if kind == "empty":
        return b"\n", {}, "answer-or-close", False, kind
    if kind == "deep":
        d = r.randint(100, 100000)
        return b'{"command":"show-interfaces","name":' + b"[" * d + b"]" * d + b"}\n", {}, "answer-or-close", False, kind
    if kind == "huge":
        return json.dumps({"command": "connect", "name": "zz", "members": ["m%d" % k for k in range(r.randint(1000, 20000))],
                           "labels": {"p2mp": "nonsense"}}).encode() + b"\n", {}, "answer-or-close", True, kind
    if kind == "over":
        return b'{"command":"show-drops","name":"' + b"x" * (1 << 20) + b'"}\n', {}, "answer-or-close", False, kind
    if kind == "nul":
        return b'{"command":"show-\x00interfaces"}\n', {}, "answer-or-close", True, kind
    if kind == "utf8":
        return b'{"command":"delete-interface","name":"\xff\xfe\xc3("}\n', {}, "answer-or-close", True, kind
    return json.dumps({"command": r.choice(READS)}).encode() + b"\n", {"pause": 0.3}, "answer", False, kind


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--count", type=int, default=500)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    r = random.Random(seed)
    base = state(a.socket)
    fails, kinds, start = [], {}, time.monotonic()
    for i in range(a.count):
        data, opts, allowed, mutating, kind = case(r, i)
        kinds[kind] = kinds.get(kind, 0) + 1
        why = None
        try:
            ans = talk(a.socket, data, **opts)
        except Exception as e:  # noqa: BLE001
            ans, why = b"", "client error: %r" % e
        if why is None:
            first = ans.split(b"\n")[0] if ans else b""
            if not first:
                if allowed != "answer-or-close":
                    why = "no answer"
            else:
                try:
                    obj = json.loads(first)
                    if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
                        why = "answer without a boolean ok: %r" % first[:200]
                    elif obj["ok"] is False and not obj.get("error"):
                        why = "refusal without an error message"
                    elif obj["ok"] is True and mutating:
                        why = "a request that should be refused was accepted: %r" % data[:300]
                except ValueError:
                    why = "answer is not JSON: %r" % first[:200]
        try:
            os.kill(a.pid, 0)
        except OSError:
            why = (why or "") + " weftd died"
        if why is None and (mutating or i % 25 == 0):
            now = state(a.socket)
            if now != base:
                why = "the node changed: %s" % json.dumps(now)[:500]
        if why:
            fails.append({"case": i, "kind": kind, "why": why, "sent": data[:200].decode("latin-1")})
            print(json.dumps(fails[-1]), flush=True)
            if not os.path.exists("/proc/%d" % a.pid):
                break
    secs = time.monotonic() - start
    print(json.dumps({"summary": True, "seed": seed, "cases": a.count, "seconds": round(secs, 1), "kinds": kinds,
                      "failures": len(fails), "ok": not fails, "replay": "--seed %d --count %d" % (seed, a.count)}))
    sys.exit(0 if not fails else 1)


if __name__ == "__main__":
    main()
