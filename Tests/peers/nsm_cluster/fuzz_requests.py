#!/usr/bin/env python3
"""A seeded, structure-aware mutational fuzzer of a real weftd's NSM API.

    python3 Tests/peers/nsm_cluster/fuzz_requests.py --weftd .build/debug/weftd [--seed N] [--count N]
    python3 Tests/peers/nsm_cluster/fuzz_requests.py --stdio ...      # a test starts weftd (see below)

It runs the peers of cluster.py in this process (SPIFFE Workload API, NSMgr registry, an endpoint,
mTLS, NSM path tokens, grpcfd fd passing), client pods as network namespaces (each with a process),
and sends weftd what the NSMgr sends a forwarder: NetworkService.Request / Close and
MonitorConnection.MonitorConnections, built with the NSMgr's own code (tokens.py, nsm_peers.NSMgr),
each case starting from a VALID request (KERNEL or MEMIF into a client pod, a refresh or Close of a
connection it holds) and mutated: mechanisms and their parameters, the IP / Ethernet context, MTU,
the path (indexes, ids, names, tokens, expiries), labels, services, payload, state, the caller's
token metadata, the fds passed, connection ids of other connections, and raw bytes at the gRPC level.

Every case is one JSON line: {"case", "op", "mutations", "result": "OK" | <gRPC status>, "message", "ms"};
the last line is {"summary": ...}. Exit status 1 on the first violated invariant (the summary names
the seed, the case and what was violated; --keep-going goes on).

Invariants, per case:
  * the call returns within --deadline seconds;
  * a refusal carries a gRPC status other than UNKNOWN / INTERNAL and a non-empty message;
  * an unmutated request / refresh / Close of a held connection succeeds;
  * weftd is alive, its admin socket answers, MonitorConnections answers;
  * consistency: the connections weftd reports (MonitorConnections) are exactly what is in the
    kernel and the dataplane: per connection its two dataplane interfaces and cross-connect, its
    host veth ends (alias weft-nsm:<name>:...), its pod interface (name + alias server-<id>) in the
    right client pod, its endpoint-pod interface (alias client-<id>), its memif socket (abstract in
    the pod, or the socket file under runtime_dir), its policy rules; nothing else of this weftd's
    anywhere (no half-applied request);
  * a case leaves the connections it did not name as they were (unless their expiry passed).
At the end: everything still held is Closed; then nothing of this run is left (no veth, alias,
memif socket, rule, dataplane interface, cross-connect; MonitorConnections and weftctl show none)
and weftd's fd count is back near where it started.

--stdio (for a test that starts weftd itself): prints {"ready": true, "nsm_yaml": <the nsm: section
to put in weftd's file>, ...} on stdout, then reads one JSON line {"pid", "admin_socket",
"runtime_dir"} on stdin once weftd runs; case lines go to --out (default: stdout).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "gen"))

import grpc  # noqa: E402

import cluster  # noqa: E402
import grpcfd  # noqa: E402
import nsm_peers  # noqa: E402
import tokens  # noqa: E402
from networkservice import connection_pb2, networkservice_pb2  # noqa: E402

FORBIDDEN = ("UNKNOWN", "INTERNAL")
SERVICE = "icmp-responder"


def fnv(s: str) -> str:
    """Weft's Names.hash: FNV-1a 64 of the UTF-8 bytes, 16 hex digits."""
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# =============================================================================================
# rtnetlink dumps inside a namespace (a socket made there keeps it)

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_GETLINK, RTM_NEWLINK, RTM_GETRULE, RTM_NEWRULE = 18, 16, 34, 32
IFLA_IFNAME, IFLA_IFALIAS = 3, 20
FRA_TABLE = 15


class NL:
    def __init__(self, netns: str | None):
        out: dict = {}

        def make():
            try:
                if netns:
                    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if _libc.setns(fd, CLONE_NEWNET) != 0:
                            raise OSError(ctypes.get_errno(), f"setns {netns}")
                    finally:
                        os.close(fd)
                s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
                s.bind((0, 0))
                out["s"] = s
            except Exception as e:  # noqa: BLE001
                out["e"] = e

        t = threading.Thread(target=make)  # setns changes only this (short-lived) thread
        t.start()
        t.join()
        if "e" in out:
            raise out["e"]
        self.s = out["s"]
        self.seq = 0
        self.lock = threading.Lock()

    def _dump(self, typ: int, payload: bytes) -> list[bytes]:
        with self.lock:
            self.seq += 1
            self.s.send(struct.pack("=IHHII", 16 + len(payload), typ, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + payload)
            msgs = []
            while True:
                data = self.s.recv(1 << 20)
                off = 0
                while off + 16 <= len(data):
                    ln, t, _fl, seq, _pid = struct.unpack_from("=IHHII", data, off)
                    if ln < 16:
                        break
                    if seq == self.seq:
                        if t == NLMSG_DONE:
                            return msgs
                        if t == NLMSG_ERROR:
                            err = struct.unpack_from("=i", data, off + 16)[0]
                            if err:
                                raise OSError(-err, "netlink dump")
                        else:
                            msgs.append(data[off + 16:off + ln])
                    off += (ln + 3) & ~3

    @staticmethod
    def _attrs(b: bytes, off: int) -> dict[int, bytes]:
        out = {}
        while off + 4 <= len(b):
            ln, t = struct.unpack_from("=HH", b, off)
            if ln < 4:
                break
            out[t & 0x3FFF] = b[off + 4:off + ln]
            off += (ln + 3) & ~3
        return out

    def links(self) -> list[tuple[str, str]]:
        """(name, alias) of every link."""
        out = []
        for m in self._dump(RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0)):
            a = self._attrs(m, 16)
            name = a.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
            alias = a.get(IFLA_IFALIAS, b"").rstrip(b"\0").decode(errors="replace")
            out.append((name, alias))
        return out

    def rules(self) -> list[tuple[int, int]]:
        """(family, table) of every policy rule."""
        out = []
        for m in self._dump(RTM_GETRULE, struct.pack("=BBBBBBBBI", 0, 0, 0, 0, 0, 0, 0, 0, 0)):
            fam, table = m[0], m[4]
            a = self._attrs(m, 12)
            if FRA_TABLE in a:
                table = struct.unpack("=I", a[FRA_TABLE][:4])[0]
            out.append((fam, table))
        return out

    def close(self):
        self.s.close()


# =============================================================================================
# the admin socket

def admin(path: str, req: dict, timeout: float = 5.0) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf.split(b"\n", 1)[0])
    finally:
        s.close()


# =============================================================================================
# results

class Result:
    def __init__(self, code: str, message: str = "", answer=None, ms: float = 0.0):
        self.code, self.message, self.answer, self.ms = code, message, answer, ms

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class Violation(Exception):
    pass


def ts_of(t: _dt.datetime):
    return nsm_peers.ts(t)


def rfc(t: _dt.datetime) -> str:
    return tokens.rfc3339nano(t)


def now_utc() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


# =============================================================================================
# the NSMgr side: calls as cluster.py's NSMgr makes them, with hooks to mutate

class Client:
    """Calls to weftd's NSM socket with the NSMgr's identity: a persistent channel (as the NSMgr
    keeps one per forwarder) or a fresh connection per call; tokens as NSMgr._tokens makes them."""

    def __init__(self, cl: cluster.Cluster, target_fn, log):
        self.cl = cl
        self.target_fn = target_fn
        self.log = log
        self.dialer = None
        self.ch = None

    def _open(self, timeout: float):
        dialer = grpcfd.ClientDialer(self.target_fn(), self.cl.mgr_identity, log=self.log)
        ch = grpcfd.channel(dialer)
        try:
            conn = grpcfd.wait_ready(ch, dialer, timeout)
        except Exception:
            ch.close()
            dialer.close()
            raise
        # small answers (a monitor event) would wait for a delayed ACK on the inner TCP hop
        try:
            conn.inner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        return dialer, ch, conn

    def close(self):
        if self.ch is not None:
            self.ch.close()
            self.dialer.close()
        self.ch = self.dialer = None

    def _persistent(self, timeout: float):
        if self.ch is not None:
            c = self.dialer.conn
            if c is not None and not c.closed.is_set():
                return self.dialer, self.ch, c
            self.close()
        self.dialer, self.ch, c = self._open(timeout)
        return self.dialer, self.ch, c

    def call(self, method: str, msg, *, fds=(), token_mode: str = "ok", after_tokens=None, fresh: bool = False,
             timeout: float = 10.0, raw: bytes | None = None) -> Result:
        """method: Request | Close | Monitor. msg: the protobuf (its path gets tokens), or raw bytes.
        after_tokens(msg, md) -> md: the case's mutations of tokens and metadata."""
        t0 = time.monotonic()
        own = None
        try:
            if fresh:
                own = self._open(timeout)
                dialer, ch, conn = own
            else:
                dialer, ch, conn = self._persistent(timeout)
        except (ConnectionError, TimeoutError) as e:
            return Result("DIAL_FAILED", str(e), ms=(time.monotonic() - t0) * 1000)
        try:
            md: list[tuple[str, str]] = []
            if raw is None and method in ("Request", "Close"):
                c = msg.connection if method == "Request" else msg
                if len(c.path.path_segments) >= 2:
                    md = self.cl.nsmgr._tokens(c, conn.peer_cert, token_mode)
                elif token_mode != "none":
                    md = tokens.metadata(*tokens.generate(self.cl.mgr_identity.svid, conn.peer_cert))
            elif method == "Monitor":
                md = tokens.metadata(*tokens.generate(self.cl.mgr_identity.svid, conn.peer_cert))
            if after_tokens is not None:
                md = after_tokens(msg, md)
            # the fds ride on the next bytes of the connection the call uses (grpcfd.Conn's own
            # queue: ClientDialer.send_fd reaches only connections made after it)
            for fd in fds:
                conn.send_fd(fd)
            if method == "Monitor":
                fn = ch.unary_stream("/connection.MonitorConnection/MonitorConnections",
                                     request_serializer=None if raw is not None else connection_pb2.MonitorScopeSelector.SerializeToString,
                                     response_deserializer=connection_pb2.ConnectionEvent.FromString)
                call = fn(raw if raw is not None else msg, metadata=md, timeout=timeout)
                try:
                    ev = next(iter(call))
                finally:
                    call.cancel()
                return Result("OK", "", ev, (time.monotonic() - t0) * 1000)
            path = "/networkservice.NetworkService/" + method
            if raw is not None:
                fn = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
                ans = fn(raw, metadata=md, timeout=timeout)
            elif method == "Request":
                fn = ch.unary_unary(path, request_serializer=networkservice_pb2.NetworkServiceRequest.SerializeToString,
                                    response_deserializer=connection_pb2.Connection.FromString)
                ans = fn(msg, metadata=md, timeout=timeout)
            else:
                from google.protobuf import empty_pb2
                fn = ch.unary_unary(path, request_serializer=connection_pb2.Connection.SerializeToString,
                                    response_deserializer=empty_pb2.Empty.FromString)
                ans = fn(msg, metadata=md, timeout=timeout)
            return Result("OK", "", ans, (time.monotonic() - t0) * 1000)
        except grpc.RpcError as e:
            code = e.code().name if e.code() is not None else "UNKNOWN"
            # grpcio's own deadline: the server did not answer in time.
            return Result(code, e.details() or "", ms=(time.monotonic() - t0) * 1000)
        except StopIteration:
            return Result("NO_EVENT", "the monitor stream ended without an event", ms=(time.monotonic() - t0) * 1000)
        finally:
            if own is not None:
                own[1].close()
                own[0].close()


# =============================================================================================
# value generators

def junk_strings(rng: random.Random) -> str:
    choice = rng.randrange(16)
    if choice == 0:
        return ""
    if choice == 1:
        return "x" * rng.choice([16, 255, 4096, 70000, 1 << 20])
    if choice == 2:
        return "a\x00b"
    if choice == 3:
        return "\x00" * rng.randint(1, 20)
    if choice == 4:
        return "ñü€漢字🙂" * rng.randint(1, 4)
    if choice == 5:
        return "\ud7ff\ufeff\u202e" + "e"
    if choice == 6:
        return "../" * rng.randint(1, 8) + "etc/passwd"
    if choice == 7:
        return " " * rng.randint(1, 5)
    if choice == 8:
        return "a\nb\rc\td"
    if choice == 9:
        return "%s%n%x{{.podName}}"
    if choice == 10:
        return "".join(chr(rng.randint(1, 0x2FF)) for _ in range(rng.randint(1, 40)))
    if choice == 11:
        return str(rng.randint(-2**63, 2**64))
    if choice == 12:
        return "inode://" + rng.choice(["", "1", "1/", "/1", "a/b", "18446744073709551616/1", "1/2/3", "-1/5"])
    if choice == 13:
        return "file://" + rng.choice(["", "relative", "/", "/nonexistent", "/etc/passwd", "/proc/self/fd/0", "/a,b", "/dev/null"])
    if choice == 14:
        return "unix:///" + "s" * rng.randint(1, 200)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.:/@") for _ in range(rng.randint(1, 30)))


def ascii_junk(rng: random.Random) -> str:
    return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(0, 60)))


BAD_ADDRS = ["", "1.2.3.4", "1.2.3.4/33", "1.2.3.4/-1", "256.1.1.1/32", "1.2.3/24", "::1/129", "::/0", "0.0.0.0/0",
             "fe80::1%eth0/64", "1.2.3.4/32 ", " 1.2.3.4/32", "1.2.3.4/3a", "garbage", "::ffff:1.2.3.4/128",
             "2001:db8::1/64", "10.0.0.1/8", "127.0.0.1/8", "224.0.0.1/32", "255.255.255.255/32", "1.2.3.4/032",
             "1::2::3/64", "1.2.3.4//32", "/32", "1.2.3.4/", "0x01.2.3.4/32", "01.02.03.04/32", "1.2.3.4/4294967328"]
BAD_MACS = ["", "00:11:22:33:44:55", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "00:11:22:33:44", "00:11:22:33:44:55:66",
            "zz:11:22:33:44:55", "0:1:2:3:4:5", "00-11-22-33-44-55", "001122334455", "00:11:22:33:44:555"]
MTUS = [0, 1, 67, 68, 576, 1280, 1499, 1500, 1501, 9000, 9216, 65535, 65536, 1 << 20, 2**31 - 1, 2**31, 2**32 - 1]


# =============================================================================================
# the fuzzer

class Live:
    """A connection this run holds: what the caller (the NSMgr) knows of it."""

    def __init__(self, weft_id: str, answer, prefs, pod: int | None, kind: str, deadline: float, netns_url: str):
        self.weft_id = weft_id
        self.answer = answer          # the caller's view (its index and id)
        self.prefs = prefs            # the mechanism preferences it was requested with
        self.pod = pod
        self.kind = kind              # KERNEL | MEMIF
        self.deadline = deadline      # time.time() after which weftd may have expired it
        self.netns_url = netns_url

    @property
    def first_id(self) -> str:
        return self.answer.path.path_segments[0].id if self.answer.path.path_segments else ""


class Case:
    def __init__(self, op: str):
        self.op = op
        self.mutations: list[str] = []
        self.expect_ok = False
        self.touches: set[str] = set()   # weft ids of held connections this case may change or remove
        self.removes: set[str] = set()   # ... that it removes when it succeeds (Close)
        self.request = None
        self.fds_paths: list[str] = []
        self.extra_fds: list[int] = []
        self.token_mode = "ok"
        self.md_muts: list = []
        self.md_expiry: _dt.datetime | None = None
        self.fresh = False
        self.raw: bytes | None = None
        self.method = "Request"

    def note(self, m: str):
        self.mutations.append(m)


class Fuzzer:
    def __init__(self, a, cl: cluster.Cluster, name: str, pods: list[dict], epod: dict, weftd: dict, out, log):
        self.a = a
        self.rng = random.Random(a.seed)
        self.cl = cl
        self.name = name
        self.pods = pods
        self.epod = epod
        self.weftd = weftd
        self.out = out
        self.log = log
        self.client = Client(cl, lambda: cl._target({"forwarder": name}), log)
        # the checks' MonitorConnections calls on a connection of their own, renewed now and
        # then: each ends with a cancel (RST_STREAM), and weftd's HTTP/2 stack (swift-nio-http2)
        # sends GOAWAY ENHANCE_YOUR_CALM after 200 resets on one connection in 30 s
        self.checker = Client(cl, lambda: cl._target({"forwarder": name}), log)
        self.checker_calls = 0
        self.live: dict[str, Live] = {}
        self.failed_ids: list[tuple[str, str]] = []   # (nsc id, nsmgr id) of requests that failed (half-built)
        self.addr_n = 0
        self.outcomes: dict[str, int] = {}
        self.by_op: dict[str, dict[str, int]] = {}
        self.violations: list[dict] = []
        self.nl_root = NL(None)
        self.nl_pods = [NL(p["path"]) for p in pods]
        self.nl_epod = NL(epod["path"])
        self.all_pods = pods + [epod]
        self.nl_all = self.nl_pods + [self.nl_epod]
        self.memif_dir = os.path.join(weftd["runtime_dir"], "memif")
        self.alias_prefix = f"weft-nsm:{name}:"
        self.fd_base = 0
        self.fd_max = 0
        self.case_no = 0
        self.latency: dict[str, list[float]] = {}
        self.passed: set[tuple[int, int]] = set()   # (dev, ino) of every file the run passed to weftd
        self.cases_checked_slow = 0

    # ---- weftd -----------------------------------------------------------------------------
    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.weftd['pid']}/fd"))

    def alive(self) -> str | None:
        pid = self.weftd["pid"]
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
            if st in ("Z", "X"):
                return f"weftd (pid {pid}) exited"
        except FileNotFoundError:
            return f"weftd (pid {pid}) is gone"
        try:
            r = admin(self.weftd["admin_socket"], {"command": "show-interfaces"}, timeout=self.a.deadline)
            if not r.get("ok"):
                return f"admin show-interfaces answered {r}"
        except Exception as e:  # noqa: BLE001
            return f"the admin socket did not answer: {type(e).__name__}: {e}"
        return None

    def monitor(self) -> dict:
        self.checker_calls += 1
        if self.checker_calls % 100 == 0:
            self.checker.close()
        r = self.checker.call("Monitor", connection_pb2.MonitorScopeSelector(), timeout=self.a.deadline)
        if not r.ok:
            raise Violation(f"MonitorConnections (empty selector) failed: {r.code} {r.message}")
        return dict(r.answer.connections)

    # ---- pods ------------------------------------------------------------------------------
    def pod_of_url(self, url: str) -> int | None:
        """Which of the run's pods (the endpoint pod is the last) a namespace URL names."""
        key = None
        if url.startswith("inode://"):
            try:
                key = grpcfd.parse_inode_url(url)
            except ValueError:
                return None
        else:
            p = url[len("file://"):] if url.startswith("file://") else url
            try:
                st = os.stat(p)
                key = (st.st_dev, st.st_ino)
            except (OSError, ValueError):
                return None
        for i, p in enumerate(self.all_pods):
            if p["key"] == key:
                return i
        return None

    # ---- the state check -------------------------------------------------------------------
    def problems(self, conns: dict) -> list[str]:
        """What is inconsistent between the connections weftd reports and the kernel / dataplane."""
        out = []
        npods = len(self.all_pods)
        exp_itf, exp_xc, exp_alias = set(), set(), set()
        exp_aliases = [Counter() for _ in range(npods)]   # pod interfaces by alias
        exp_named = [set() for _ in range(npods)]         # (name, alias) of the callers' KERNEL interfaces
        exp_rules = [0] * npods
        exp_abstract = [set() for _ in range(npods)]
        exp_dirs = set()
        ep = npods - 1
        for cid, c in conns.items():
            h = fnv(cid)
            exp_itf |= {f"nsm-{h}-s", f"nsm-{h}-c"}
            exp_xc.add(f"nsm-{h}")
            first = c.path.path_segments[0].id if c.path.path_segments else ""
            exp_alias.add(f"{self.alias_prefix}client-{cid}")
            exp_aliases[ep][f"client-{first}"] += 1
            m = c.mechanism
            if m.type == "KERNEL":
                exp_alias.add(f"{self.alias_prefix}server-{cid}")
                pod = self.pod_of_url(m.parameters.get("inodeURL", ""))
                if pod is None:
                    out.append(f"connection {cid}: KERNEL into a namespace that is none of the run's pods: {dict(m.parameters)}")
                    continue
                exp_aliases[pod][f"server-{first}"] += 1
                exp_named[pod].add((m.parameters.get("name", ""), f"server-{first}"))
                exp_rules[pod] += len(c.context.ip_context.policies)
            elif m.type == "MEMIF":
                sf = m.parameters.get("socketfile", "")
                if sf.startswith("@"):
                    # v1.2: abstract, in the namespace its request named; found by the socket
                    found = [i for i in range(npods) if sf in self.unix_of(i)]
                    if not found:
                        out.append(f"connection {cid}: abstract memif socket {sf} is in none of the pods")
                    for i in found:
                        exp_abstract[i].add(sf)
                    if sf != f"@/tmp/memif/{cid}/memif.socket":
                        out.append(f"connection {cid}: memif socket {sf} is not Weft's name for it")
                else:
                    exp_dirs.add(h)
            else:
                out.append(f"connection {cid}: mechanism towards the caller is {m.cls}/{m.type}")
        itfs = {i["name"] for i in admin(self.weftd["admin_socket"], {"command": "show-interfaces"}).get("interfaces", [])
                if i["name"].startswith("nsm-")}
        xcs = {x["name"] for x in admin(self.weftd["admin_socket"], {"command": "show-cross-connects"}).get("crossConnects", [])
               if x["name"].startswith("nsm-")}
        if itfs != exp_itf:
            out.append(f"dataplane interfaces: missing {sorted(exp_itf - itfs)}, of no connection {sorted(itfs - exp_itf)}")
        if xcs != exp_xc:
            out.append(f"cross-connects: missing {sorted(exp_xc - xcs)}, of no connection {sorted(xcs - exp_xc)}")
        aliases = {al for _, al in self.nl_root.links() if al.startswith(self.alias_prefix)}
        if aliases != exp_alias:
            out.append(f"host veth ends: missing {sorted(exp_alias - aliases)}, of no connection {sorted(aliases - exp_alias)}")
        for i, nl in enumerate(self.nl_all):
            what = "endpoint pod" if i == ep else f"pod {i}"
            links = [(n, al) for n, al in nl.links() if n != "lo"]
            have = Counter(al for _, al in links)
            if have != exp_aliases[i]:
                out.append(f"{what} interfaces by alias: missing {sorted((exp_aliases[i] - have).elements())}, "
                           f"of no connection {sorted((have - exp_aliases[i]).elements())}")
            missing = exp_named[i] - set(links)
            if missing:
                out.append(f"{what}: no interface {sorted(missing)} (name, alias); it has {sorted(links)}")
            rules = [r for r in nl.rules() if r[1] not in (253, 254, 255)]
            if len(rules) != exp_rules[i]:
                out.append(f"{what}: {len(rules)} policy rules {rules}, the connections' contexts have {exp_rules[i]} policies")
            abstract = {x for x in self.unix_of(i) if x.startswith("@/tmp/memif/")}
            if abstract != exp_abstract[i]:
                out.append(f"{what} memif sockets: missing {sorted(exp_abstract[i] - abstract)}, of no connection {sorted(abstract - exp_abstract[i])}")
        try:
            dirs = set(os.listdir(self.memif_dir))
        except FileNotFoundError:
            dirs = set()
        if dirs != exp_dirs:
            out.append(f"memif socket files under {self.memif_dir}: missing {sorted(exp_dirs - dirs)}, of no connection {sorted(dirs - exp_dirs)}")
        return out

    def unix_of(self, pod: int) -> set[str]:
        try:
            with open(f"/proc/{self.all_pods[pod]['proc'].pid}/net/unix") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            return set()
        return {ln.split()[-1] for ln in lines if len(ln.split()) >= 8}

    def check_state(self, case: Case | None) -> dict:
        """Consistency (retried a moment: an expiry may be half-way), then the model."""
        deadline = time.monotonic() + 3.0
        while True:
            conns = self.monitor()
            probs = self.problems(conns)
            if not probs:
                break
            if time.monotonic() > deadline:
                raise Violation("inconsistent state: " + "; ".join(probs))
            time.sleep(0.2)
        now = time.time()
        for wid, lv in list(self.live.items()):
            touched = case is not None and wid in case.touches
            if wid not in conns:
                if touched or now > lv.deadline - 2:
                    del self.live[wid]
                    continue
                raise Violation(f"held connection {wid} ({lv.kind}, pod {lv.pod}) vanished although this case did not name it "
                                f"and its expiry is {lv.deadline - now:.0f} s away")
            if not touched:
                c = conns[wid]
                if c.mechanism.type != lv.kind:
                    raise Violation(f"held connection {wid}: mechanism {lv.kind} became {c.mechanism.type}")
        return conns

    # ---- building requests -----------------------------------------------------------------
    def pick_pod(self) -> int:
        return self.rng.randrange(len(self.pods))

    def free_ifname(self, pod: int) -> str:
        used = {n for n, _ in self.nl_all[pod].links()}
        for _ in range(100):
            n = f"nsm-{self.rng.randrange(64)}"
            if n not in used:
                return n
        return f"nsm-x{self.rng.randrange(1 << 20)}"

    def addrs(self) -> tuple[str, str]:
        self.addr_n += 1
        n = self.addr_n % 60000
        return f"10.{100 + n // 250 % 100}.{n % 250}.1/32", f"10.{100 + n // 250 % 100}.{n % 250}.2/32"

    def base_request(self, case: Case, kind: str | None = None, pod: int | None = None):
        kind = kind or self.rng.choice(["KERNEL", "KERNEL", "MEMIF", "MEMIF-v1.1"])
        pod = self.pick_pod() if pod is None else pod
        req = networkservice_pb2.NetworkServiceRequest()
        c = req.connection
        c.network_service = SERVICE
        c.labels["podName"] = "nsc"
        c.path.path_segments.add(name="nsc", id=str(uuid.uuid4()))
        mgr = str(uuid.uuid4())
        c.path.path_segments.add(name="nsmgr", id=mgr)
        c.path.index = 1
        c.id = mgr
        src, dst = self.addrs()
        c.context.ip_context.src_ip_addrs.append(src)
        c.context.ip_context.dst_ip_addrs.append(dst)
        m = req.mechanism_preferences.add(cls="LOCAL", type="MEMIF" if kind.startswith("MEMIF") else "KERNEL")
        use_file = self.rng.random() < 0.15
        if kind != "MEMIF-v1.1":
            if use_file:
                m.parameters["inodeURL"] = "file://" + self.pods[pod]["path"]
            else:
                m.parameters["inodeURL"] = self.pods[pod]["url"]
                case.fds_paths.append(self.pods[pod]["path"])
        if kind == "KERNEL":
            m.parameters["name"] = self.free_ifname(pod)
        case.note(f"base {kind} pod {pod}{' file://' if use_file else ''}")
        return req

    # ---- mutations of a request ------------------------------------------------------------
    def mutate_mechanism(self, case: Case, req):
        rng = self.rng
        prefs = req.mechanism_preferences
        k = rng.randrange(12)
        if k == 0 and len(prefs):
            v = rng.choice(["KERNEL", "MEMIF", "VXLAN", "VLAN", "WIREGUARD", "kernel", "", junk_strings(rng)])
            prefs[0].type = v
            case.note(f"mechanism type {v[:40]!r}")
        elif k == 1 and len(prefs):
            v = rng.choice(["LOCAL", "REMOTE", "", "local", junk_strings(rng)])
            prefs[0].cls = v
            case.note(f"mechanism cls {v[:40]!r}")
        elif k == 2:
            del prefs[:]
            case.note("no mechanism preferences")
        elif k == 3 and len(prefs):
            n = rng.choice([2, 10, 1000])
            first = connection_pb2.Mechanism()
            first.CopyFrom(prefs[0])
            for _ in range(n):
                prefs.add().CopyFrom(first)
            case.note(f"preference repeated {n} times")
        elif k == 4:
            for _ in range(rng.randint(1, 3)):
                prefs.insert(0, connection_pb2.Mechanism(cls=rng.choice(["LOCAL", "REMOTE"]),
                                                         type=rng.choice(["VXLAN", "VLAN", "WIREGUARD", "IPSEC", "SRIOV"])))
            case.note("unserved mechanisms first")
        elif k == 5 and len(prefs):
            key = rng.choice(["inodeURL", "name", "socketfile", "MTU", "src_ip", "dst_ip", "src_port", "vni", "tokenID",
                              "vlan-id", "via", junk_strings(rng)[:50]])
            v = junk_strings(rng)
            prefs[0].parameters[key] = v
            case.note(f"parameter {key[:30]!r} = {v[:40]!r}")
        elif k == 6 and len(prefs):
            key = rng.choice(["inodeURL", "name", "socketfile"])
            if key in prefs[0].parameters:
                del prefs[0].parameters[key]
                case.note(f"parameter {key} removed")
        elif k == 7 and len(prefs):
            v = rng.choice(["", "a" * 16, "a" * 15, "a/b", "a:b", "a b", ".", "..", "ñüñüñüñü", "a\x00b", "lo",
                            "nsm-" + "é" * 6, "-", "%d", "a\nb", "🙂🙂🙂🙂", "nsm-à", "a\x01b", "a\u00a0b", "a\u2003b"])
            prefs[0].parameters["name"] = v
            case.note(f"name {v!r}")
        elif k == 8 and len(prefs):
            pod2 = self.pick_pod()
            v = rng.choice([self.pods[pod2]["url"], "file://" + self.pods[pod2]["path"], self.pods[pod2]["path"],
                            f"file:///proc/{self.pods[pod2]['proc'].pid}/ns/net", self.epod["url"],
                            "file://" + self.epod["path"], "inode://0/0", grpcfd.inode_url_of_path("/dev/null"),
                            grpcfd.inode_url_of_path(self.cl.paths["nse_socket"]), "file:///dev/null",
                            "file://" + self.cl.paths["nse_socket"], "file:///var/run/netns/",
                            f"file:///var/run/netns/wt-no-such-{rng.randrange(1000)}", "inode://1/1"])
            prefs[0].parameters["inodeURL"] = v
            if v == self.pods[pod2]["url"] and rng.random() < 0.7:
                case.fds_paths = [self.pods[pod2]["path"]]
            case.note(f"inodeURL {v}")
        elif k == 9 and len(prefs):
            # an fd whose URL is the inodeURL, of something that is not a network namespace
            what = rng.choice(["/dev/null", self.cl.paths["nse_socket"], "/", "/proc/self/stat", "pipe"])
            if what == "pipe":
                r, w = os.pipe()
                os.close(w)
                case.extra_fds.append(r)
                prefs[0].parameters["inodeURL"] = grpcfd.inode_url_of_fd(r)
            else:
                fd = grpcfd.open_for_sending(what)
                case.extra_fds.append(fd)
                prefs[0].parameters["inodeURL"] = grpcfd.inode_url_of_fd(fd)
            case.fds_paths = []
            case.note(f"inodeURL = inode of {what} (its fd passed)")
        elif k == 10:
            case.fds_paths = []
            case.note("no fd passed")
        else:
            # many fds with the request
            n = rng.choice([5, 70, 200])
            for _ in range(n):
                case.extra_fds.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
            case.note(f"{n} extra fds")

    def mutate_connection_mechanism(self, case: Case, req):
        rng = self.rng
        m = req.connection.mechanism
        m.cls = rng.choice(["LOCAL", "REMOTE", ""])
        m.type = rng.choice(["KERNEL", "MEMIF", "VXLAN", "", junk_strings(rng)])
        for _ in range(rng.randint(0, 3)):
            m.parameters[rng.choice(["inodeURL", "name", "socketfile", "src_ip", "vni"])] = rng.choice(
                [junk_strings(rng), self.pods[self.pick_pod()]["url"],
                 self.weftd["runtime_dir"] + "/memif/" + fnv(req.connection.id) + "/memif.socket"])
        case.note(f"connection.mechanism {m.cls}/{m.type[:20]!r} {len(m.parameters)} params")

    def mutate_context(self, case: Case, req):
        rng = self.rng
        ctx = req.connection.context
        ip = ctx.ip_context
        k = rng.randrange(14)
        if k == 0:
            f = rng.choice([ip.src_ip_addrs, ip.dst_ip_addrs])
            del f[:]
            for _ in range(rng.choice([0, 1, 2, 3])):
                f.append(rng.choice(BAD_ADDRS))
            case.note(f"ip addrs {list(ip.src_ip_addrs)} -> {list(ip.dst_ip_addrs)}")
        elif k == 1:
            n = rng.choice([50, 500])
            for i in range(n):
                ip.src_ip_addrs.append(f"10.250.{i // 250}.{i % 250 + 1}/32")
            case.note(f"{n} more src addresses")
        elif k == 2:
            ip.src_ip_addrs.append(ip.src_ip_addrs[0] if len(ip.src_ip_addrs) else "10.9.9.9/32")
            case.note("duplicate src address")
        elif k == 3:
            fam6 = rng.random() < 0.5
            del ip.src_ip_addrs[:]
            del ip.dst_ip_addrs[:]
            n = self.addr_n = self.addr_n + 1
            ip.src_ip_addrs.append(f"fd00:{n % 65535:x}::1/128" if fam6 else f"10.200.{n % 250}.1/32")
            ip.dst_ip_addrs.append(f"10.201.{n % 250}.2/32" if fam6 else f"fd01:{n % 65535:x}::2/128")
            case.note("IPv4/IPv6 mix")
        elif k == 4:
            f = rng.choice([ip.src_routes, ip.dst_routes])
            for _ in range(rng.randint(1, 3)):
                f.add(prefix=rng.choice(BAD_ADDRS + ["192.168.0.0/16", "fd00::/8"]),
                      nextHop=rng.choice(["", "10.1.1.1", "fd00::1", "garbage", "1.2.3.4/32", "0.0.0.0", "::"]))
            case.note(f"routes {[(r.prefix, r.nextHop) for r in f][:3]}")
        elif k == 5:
            for _ in range(rng.choice([1, 2, 3])):
                p = ip.policies.add(**{"from": rng.choice(["", "10.0.0.0/8", "fd00::/8", "garbage", "1.2.3.4/33"])},
                                    proto=rng.choice(["", "6", "17", "256", "-1", "tcp"]),
                                    dst_port=rng.choice(["", "80", "8000-8080", "0", "65536", "90-80", "1-2-3", "a"]),
                                    src_port=rng.choice(["", "1024", "1-65535", "x"]))
                for _ in range(rng.randint(0, 2)):
                    p.routes.add(prefix=rng.choice(["172.30.0.0/16", "fd02::/16", "bad", "0.0.0.0/0"]),
                                 nextHop=rng.choice(["", "172.30.0.1", "fd02::1", "bad"]))
            case.note(f"{len(ip.policies)} policies {[(getattr(p, 'from'), p.proto, p.dst_port, p.src_port) for p in ip.policies][:3]}")
        elif k == 6:
            p = ip.policies.add(**{"from": "10.0.0.0/8"}, proto="6", dst_port="80")
            ip.policies.add().CopyFrom(p)
            case.note("duplicate policy")
        elif k == 7:
            for _ in range(rng.randint(1, 4)):
                ip.ip_neighbors.add(ip=rng.choice(BAD_ADDRS + ["10.1.1.1", "fd00::5"]), hardware_address=rng.choice(BAD_MACS))
            case.note(f"neighbours {[(n.ip, n.hardware_address) for n in ip.ip_neighbors][:3]}")
        elif k == 8:
            for _ in range(rng.randint(1, 5)):
                rng.choice([ip.excluded_prefixes, ip.extra_prefixes]).append(rng.choice(BAD_ADDRS))
            ip.src_ip_required = rng.random() < 0.5
            ip.dst_ip_required = rng.random() < 0.5
            r = ip.extra_prefix_request.add(prefix_len=rng.choice([0, 24, 200, 2**32 - 1]),
                                            required_number=rng.randrange(2**32), requested_number=rng.randrange(2**32))
            r.addr_family.family = rng.choice([0, 1, 7])
            case.note("excluded/extra prefixes, extra prefix request")
        elif k == 9:
            ctx.ethernet_context.src_mac = rng.choice(BAD_MACS)
            ctx.ethernet_context.dst_mac = rng.choice(BAD_MACS)
            ctx.ethernet_context.vlan_tag = rng.choice([0, 1, 4094, 4095, 4096, -1, 2**31 - 1])
            case.note(f"ethernet {ctx.ethernet_context.src_mac!r} {ctx.ethernet_context.dst_mac!r} {ctx.ethernet_context.vlan_tag}")
        elif k == 10:
            ctx.MTU = rng.choice(MTUS)
            case.note(f"MTU {ctx.MTU}")
        elif k == 11:
            for _ in range(rng.randint(1, 3)):
                ctx.dns_context.configs.add(dns_server_ips=[rng.choice(BAD_ADDRS)], search_domains=[junk_strings(rng)[:100]])
            ctx.extra_context[junk_strings(rng)[:100]] = junk_strings(rng)[:1000]
            case.note("dns / extra context")
        elif k == 12:
            req.connection.ClearField("context")
            case.note("no context")
        else:
            # the addresses of another held connection (same pod: a clash)
            others = [lv for lv in self.live.values() if lv.answer.context.ip_context.src_ip_addrs]
            if others:
                o = rng.choice(others)
                del ip.src_ip_addrs[:]
                del ip.dst_ip_addrs[:]
                ip.src_ip_addrs.extend(o.answer.context.ip_context.src_ip_addrs)
                ip.dst_ip_addrs.extend(o.answer.context.ip_context.dst_ip_addrs)
                case.note(f"addresses of held {o.weft_id[:8]}")

    def mutate_path(self, case: Case, req):
        rng = self.rng
        c = req.connection
        segs = c.path.path_segments
        k = rng.randrange(13)
        if k == 0:
            c.path.index = rng.choice([0, 2, 3, 7, 2**31, 2**32 - 1])
            case.note(f"path.index {c.path.index}")
        elif k == 1 and len(segs):
            del segs[rng.randrange(len(segs))]
            case.note("a path segment removed")
        elif k == 2:
            del segs[:]
            case.note("empty path")
        elif k == 3:
            pos = rng.randint(0, len(segs))
            nm = rng.choice([self.name, "nse-x", "", junk_strings(rng)[:200], "nsmgr"])
            segs.insert(pos, connection_pb2.PathSegment(name=nm, id=rng.choice([str(uuid.uuid4()), "", c.id])))
            case.note(f"segment {nm[:30]!r} inserted at {pos}")
        elif k == 4 and len(segs):
            i = rng.randrange(len(segs))
            segs[i].id = rng.choice(["", junk_strings(rng), segs[(i + 1) % len(segs)].id])
            case.note(f"segment {i} id {segs[i].id[:30]!r}")
        elif k == 5 and len(segs):
            i = rng.randrange(len(segs))
            segs[i].name = rng.choice(["", self.name, junk_strings(rng)])
            case.note(f"segment {i} name {segs[i].name[:30]!r}")
        elif k == 6:
            c.id = rng.choice(["", junk_strings(rng), str(uuid.uuid4())])
            case.note(f"connection.id {c.id[:30]!r}")
        elif k == 7 and len(segs):
            i = rng.randrange(len(segs))
            segs[i].metrics[junk_strings(rng)[:50]] = junk_strings(rng)[:500]
            case.note(f"segment {i} metrics")
        elif k == 8:
            for _ in range(rng.choice([10, 100, 2000])):
                segs.add(name=junk_strings(rng)[:20], id=str(uuid.uuid4()))
            case.note(f"{len(segs)} segments")
        elif k == 9 and self.live:
            # the ids of a held connection: its NSC and NSMgr segments (not Weft's)
            o = rng.choice(list(self.live.values()))
            if len(o.answer.path.path_segments) >= 2 and len(segs) >= 2:
                segs[0].id = o.answer.path.path_segments[0].id
                if rng.random() < 0.5:
                    segs[1].id = o.answer.path.path_segments[1].id
                    c.id = segs[1].id
                case.note(f"ids of held {o.weft_id[:8]} (nsc{', nsmgr' if c.id == segs[1].id else ''})")
        elif k == 10 and self.live:
            # a held connection's whole path (Weft's segment too): a request for it
            o = rng.choice(list(self.live.values()))
            del segs[:]
            segs.extend(o.answer.path.path_segments)
            c.path.index = o.answer.path.index
            c.id = o.answer.id
            case.touches.add(o.weft_id)
            case.note(f"path of held {o.weft_id[:8]}")
        elif k == 11 and self.failed_ids:
            nsc, mgr = rng.choice(self.failed_ids)
            if len(segs) >= 2:
                segs[0].id, segs[1].id = nsc, mgr
                c.id = mgr
                case.note("ids of a refused request")
        else:
            c.path.index = 1 if len(segs) > 1 else 0
            case.note("path unchanged")

    def mutate_misc(self, case: Case, req):
        rng = self.rng
        c = req.connection
        k = rng.randrange(9)
        if k == 0:
            c.network_service = rng.choice(["", "no-such-service", junk_strings(rng), "forwarder", SERVICE.upper()])
            case.note(f"network_service {c.network_service[:30]!r}")
        elif k == 1:
            c.network_service_endpoint_name = rng.choice(["no-such-nse", self.cl.a.nse_name, self.name, junk_strings(rng)])
            case.note(f"endpoint name {c.network_service_endpoint_name[:30]!r}")
        elif k == 2:
            c.payload = rng.choice(["IP", "ETHERNET", "", "ip", junk_strings(rng)])
            case.note(f"payload {c.payload[:30]!r}")
        elif k == 3:
            c.state = rng.choice([1, 2, 3, 99, -1])
            case.note(f"state {c.state}")
        elif k == 4:
            for _ in range(rng.choice([1, 10, 1000])):
                c.labels[junk_strings(rng)[:100] or "k"] = junk_strings(rng)[:200]
            case.note(f"{len(c.labels)} labels")
        elif k == 5:
            c.labels[""] = ""
            c.labels["podName"] = junk_strings(rng)
            case.note("labels: empty key, junk podName")
        elif k == 6:
            c.labels["via"] = rng.choice(["uplink", "", junk_strings(rng)])
            case.note(f"label via {c.labels['via'][:20]!r}")
        elif k == 7:
            c.network_service = SERVICE
            c.network_service_endpoint_name = self.cl.a.nse_name
            case.note("service + endpoint by name")
        else:
            c.network_service = junk_strings(rng)[:64] or "x"
            c.network_service_endpoint_name = self.cl.a.nse_name
            case.note(f"endpoint by name, service {c.network_service[:20]!r}")

    def mutate_tokens(self, case: Case):
        rng = self.rng
        k = rng.randrange(10)
        if k < 3:
            case.token_mode = rng.choice(["forged", "expired", "broken-chain", "none", "aud-string"])
            case.note(f"token {case.token_mode}")
        elif k == 3:
            case.md_muts.append(("drop", tokens.TOKEN_KEY))
            case.note("no metadata token")
        elif k == 4:
            case.md_muts.append(("drop", tokens.EXPIRES_KEY))
            case.note("no metadata expiry")
        elif k == 5:
            v = rng.choice(["", "garbage", "2026-13-45T99:99:99Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                            "2026-11-29T12:00:00+25:00", "2026-11-29T12:00:00.Z", "0000-00-00T00:00:00Z",
                            "2026-11-29T12:00:00.123456789123456789Z", "2026-11-29 12:00:00Z", "x" * 5000])
            case.md_muts.append(("set", tokens.EXPIRES_KEY, v))
            case.note(f"metadata expiry {v[:40]!r}")
        elif k == 6:
            secs = rng.choice([-3600, -5, 1, 3, 12, 15, 30])
            case.md_expiry = now_utc() + _dt.timedelta(seconds=secs)
            case.note(f"metadata expiry in {secs} s")
        elif k == 7:
            # (printable ASCII: grpcio itself refuses other header values, INTERNAL "Invalid metadata")
            v = rng.choice(["", "a.b.c", "x" * 10000, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", ascii_junk(rng)])
            case.md_muts.append(("set", tokens.TOKEN_KEY, v))
            case.note(f"metadata token {v[:30]!r}")
        elif k == 8:
            case.md_muts.append(("dup", tokens.TOKEN_KEY))
            case.note("metadata token twice")
        else:
            case.md_muts.append(("segtoken", rng.choice([0, 1]), rng.choice(["", "garbage", "a.b.c", "x" * 20000])))
            case.note("a segment's token replaced")

    def apply_md(self, case: Case):
        def after(msg, md):
            md = list(md)
            c = msg.connection if case.method == "Request" and hasattr(msg, "connection") else msg
            for m in case.md_muts:
                if m[0] == "drop":
                    md = [x for x in md if x[0] != m[1]]
                elif m[0] == "set":
                    md = [x for x in md if x[0] != m[1]] + [(m[1], m[2])]
                elif m[0] == "dup":
                    md = md + [x for x in md if x[0] == m[1]]
                elif m[0] == "segtoken":
                    if m[1] < len(c.path.path_segments):
                        c.path.path_segments[m[1]].token = m[2]
            if case.md_expiry is not None:
                md = [x for x in md if x[0] != tokens.EXPIRES_KEY] + [(tokens.EXPIRES_KEY, rfc(case.md_expiry))]
            return md
        return after

    # ---- cases -----------------------------------------------------------------------------
    def make_case(self) -> Case:
        rng = self.rng
        r = rng.random()
        held = list(self.live.values())
        if len(held) > self.a.max_live and r < 0.5:
            return self.case_close(rng.choice(held))
        if r < 0.12:
            return self.case_valid_request()
        if r < 0.55:
            return self.case_mutated_request()
        if r < 0.60 and held:
            return self.case_refresh(rng.choice(held), mutate=False)
        if r < 0.70 and held:
            return self.case_refresh(rng.choice(held), mutate=True)
        if r < 0.77 and held:
            return self.case_close(rng.choice(held))
        if r < 0.86:
            return self.case_mutated_close()
        if r < 0.92:
            return self.case_monitor()
        return self.case_raw()

    def case_valid_request(self) -> Case:
        case = Case("request")
        case.request = self.base_request(case)
        case.expect_ok = True
        case.fresh = self.rng.random() < 0.2
        return case

    def case_mutated_request(self) -> Case:
        case = Case("request*")
        req = self.base_request(case)
        muts = [self.mutate_mechanism, self.mutate_context, self.mutate_path, self.mutate_misc, self.mutate_tokens,
                self.mutate_connection_mechanism]
        weights = [5, 5, 4, 3, 2, 1]
        for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3])):
            fn = self.rng.choices(muts, weights)[0]
            if fn == self.mutate_tokens:
                fn(case)
            else:
                fn(case, req)
        case.request = req
        case.fresh = self.rng.random() < 0.2
        # a request whose path has a held connection's Weft segment is a request for that connection
        ids = {s.id for s in req.connection.path.path_segments} | {req.connection.id}
        case.touches |= {w for w in self.live if w in ids}
        return case

    def refresh_request(self, lv: Live):
        req = networkservice_pb2.NetworkServiceRequest()
        # as the NSMgr does: the answer as it came (the caller's index and id)
        req.connection.CopyFrom(lv.answer)
        for m in lv.prefs:
            req.mechanism_preferences.add().CopyFrom(m)
        return req

    def case_refresh(self, lv: Live, mutate: bool) -> Case:
        case = Case("refresh*" if mutate else "refresh")
        case.request = self.refresh_request(lv)
        case.touches.add(lv.weft_id)
        if lv.netns_url.startswith("inode://") and lv.pod is not None:
            case.fds_paths.append(self.all_pods[lv.pod]["path"])
        case.note(f"refresh {lv.weft_id[:8]} ({lv.kind}, pod {lv.pod})")
        if not mutate:
            case.expect_ok = True
            return case
        rng = self.rng
        c = case.request.connection
        k = rng.randrange(10)
        if k == 0:
            other = "MEMIF" if c.mechanism.type == "KERNEL" else "KERNEL"
            c.mechanism.type = other
            del case.request.mechanism_preferences[:]
            pod = self.pick_pod()
            m = case.request.mechanism_preferences.add(cls="LOCAL", type=other)
            m.parameters["inodeURL"] = self.pods[pod]["url"]
            case.fds_paths = [self.pods[pod]["path"]]
            if other == "KERNEL":
                m.parameters["name"] = self.free_ifname(pod)
                c.mechanism.parameters["name"] = m.parameters["name"]
            c.mechanism.parameters["inodeURL"] = m.parameters["inodeURL"]
            case.note(f"mechanism changed to {other} (pod {pod})")
        elif k == 1:
            c.ClearField("mechanism")
            case.note("connection.mechanism cleared")
        elif k == 2:
            pod = self.pick_pod()
            c.mechanism.parameters["inodeURL"] = self.pods[pod]["url"]
            case.fds_paths = [self.pods[pod]["path"]]
            case.note(f"netns changed to pod {pod}")
        elif k == 3 and c.mechanism.type == "KERNEL":
            c.mechanism.parameters["name"] = rng.choice([self.free_ifname(lv.pod or 0), "a" * 16, "", "lo"])
            case.note(f"pod interface name changed to {c.mechanism.parameters['name']!r}")
        elif k == 4:
            c.state = 3
            case.note("RESELECT_REQUESTED")
        elif k == 5:
            self.mutate_context(case, case.request)
            case.note("(refresh) context changed")
        elif k == 6 and len(c.path.path_segments) > 2:
            c.path.path_segments[2].id = rng.choice([str(uuid.uuid4()), "", junk_strings(rng)])
            case.note("Weft's segment id changed")
        elif k == 7:
            c.network_service_endpoint_name = rng.choice(["no-such-nse", junk_strings(rng)])
            case.note("endpoint name changed")
        elif k == 8:
            self.mutate_tokens(case)
        else:
            self.mutate_mechanism(case, case.request)
        case.expect_ok = False
        return case

    def case_close(self, lv: Live) -> Case:
        case = Case("close")
        case.method = "Close"
        c = connection_pb2.Connection()
        c.CopyFrom(lv.answer)   # the caller's view, as the answer came
        case.request = c
        case.touches.add(lv.weft_id)
        case.removes.add(lv.weft_id)
        case.expect_ok = True
        case.fresh = self.rng.random() < 0.2
        case.note(f"close {lv.weft_id[:8]} ({lv.kind}, pod {lv.pod})")
        return case

    def case_mutated_close(self) -> Case:
        rng = self.rng
        case = Case("close*")
        case.method = "Close"
        k = rng.randrange(9)
        held = list(self.live.values())
        if k == 0 or not held:
            c = connection_pb2.Connection(id=str(uuid.uuid4()), network_service=SERVICE)
            c.path.path_segments.add(name="nsc", id=str(uuid.uuid4()))
            c.path.path_segments.add(name="nsmgr", id=c.id)
            c.path.index = 1
            case.note("unknown connection")
        elif k == 1 and self.failed_ids:
            nsc, mgr = rng.choice(self.failed_ids)
            c = connection_pb2.Connection(id=mgr, network_service=SERVICE)
            c.path.path_segments.add(name="nsc", id=nsc)
            c.path.path_segments.add(name="nsmgr", id=mgr)
            c.path.path_segments.add(name=self.name, id=str(uuid.uuid4()))
            c.path.index = 1
            case.note("a refused request's ids")
        elif k == 2:
            c = connection_pb2.Connection()
            case.note("empty connection")
        else:
            lv = rng.choice(held)
            c = connection_pb2.Connection()
            c.CopyFrom(lv.answer)
            c.path.index = 1
            c.id = c.path.path_segments[1].id if len(c.path.path_segments) > 1 else c.id
            segs = c.path.path_segments
            if k == 3:
                c.path.index = rng.choice([0, 2, 3, 9, 2**32 - 1])
                case.note(f"held {lv.weft_id[:8]}, path.index {c.path.index}")
            elif k == 4:
                del segs[2:]
                case.note(f"held {lv.weft_id[:8]}, path cut after the NSMgr")
            elif k == 5:
                if len(segs) > 2:
                    segs[2].id = rng.choice(["", str(uuid.uuid4()), junk_strings(rng)])
                    segs[2].name = rng.choice([self.name, "other", ""])
                case.note(f"held {lv.weft_id[:8]}, Weft's segment changed")
            elif k == 6:
                case.token_mode = rng.choice(["forged", "expired", "broken-chain", "none", "aud-string"])
                case.note(f"held {lv.weft_id[:8]}, token {case.token_mode}")
            elif k == 7:
                c.id = rng.choice(["", junk_strings(rng)])
                case.note(f"held {lv.weft_id[:8]}, connection.id {c.id[:20]!r}")
            else:
                self.mutate_tokens(case)
                case.note(f"held {lv.weft_id[:8]}")
            case.touches.add(lv.weft_id)
        case.request = c
        return case

    def case_monitor(self) -> Case:
        rng = self.rng
        case = Case("monitor*")
        case.method = "Monitor"
        sel = connection_pb2.MonitorScopeSelector()
        k = rng.randrange(5)
        if k == 0:
            for _ in range(rng.choice([1, 100, 5000])):
                sel.path_segments.add(name=junk_strings(rng)[:50], id=junk_strings(rng)[:50], token=junk_strings(rng)[:50])
            case.note(f"{len(sel.path_segments)} selector segments")
        elif k == 1:
            sel.network_services.extend([junk_strings(rng)[:100] for _ in range(rng.choice([1, 1000]))])
            case.note("selector services")
        elif k == 2 and self.live:
            lv = rng.choice(list(self.live.values()))
            sel.path_segments.add(id=lv.answer.path.path_segments[1].id, name="nsmgr")
            case.note("the NSMgr's selector of a held connection")
        elif k == 3:
            sel.path_segments.add(id="x" * (1 << 20))
            case.note("a 1 MiB selector id")
        else:
            case.note("empty selector")
        case.request = sel
        return case

    def case_raw(self) -> Case:
        rng = self.rng
        case = Case("raw")
        case.method = rng.choice(["Request", "Close", "Monitor"])
        k = rng.randrange(9)
        if k == 0:
            case.raw = bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 7, 64, 1000])))
            case.note(f"{len(case.raw)} random bytes")
        elif k == 1:
            req = self.base_request(Case("x"))
            b = req.SerializeToString()
            case.raw = b[:rng.randrange(1, len(b))]
            case.note("truncated request")
        elif k == 2:
            case.raw = b"\x0b" * rng.choice([100, 10000, 100000])
            case.note(f"{len(case.raw)} nested start-groups")
        elif k == 3:
            case.raw = b"\x0a\x80\x80\x80\x80\x10"  # length-delimited field with a huge length
            case.note("huge length prefix")
        elif k == 4:
            case.raw = b"\x0a" + b"\xff" * 11
            case.note("overlong varint")
        elif k == 5:
            b = bytearray()
            for _ in range(rng.choice([100, 3000])):
                b += b"\x0a\x00"
            case.raw = bytes(b)
            case.note("many empty sub-messages")
        elif k == 6:
            # a valid request with unknown fields of every wire type appended
            req = self.base_request(Case("x"))
            case.raw = req.SerializeToString() + b"\xf8\x07\x01\xfd\x07\x00\x00\x00\x00\xf9\x07" + b"\x00" * 8 + b"\xfa\x07\x03abc"
            case.note("valid request with unknown fields")
        elif k == 7:
            # a Connection where a NetworkServiceRequest belongs, and vice versa
            req = self.base_request(Case("x"))
            case.raw = req.connection.SerializeToString() if case.method == "Request" else req.SerializeToString()
            case.note("wrong message type")
        else:
            case.raw = b"\x12" + b"\x80\x80\x80\x02" + b"\x00" * (4 << 20)
            case.note("4 MiB message")
        return case

    # ---- running a case --------------------------------------------------------------------
    def run_case(self, case: Case) -> Result:
        fds = []
        try:
            for p in case.fds_paths:
                fds.append(os.open(p, os.O_RDONLY | os.O_CLOEXEC))
            fds += case.extra_fds
            for fd in fds:
                st = os.fstat(fd)
                self.passed.add((st.st_dev, st.st_ino))
            after = self.apply_md(case) if (case.md_muts or case.md_expiry) else None
            return self.client.call(case.method, case.request, fds=fds, token_mode=case.token_mode, after_tokens=after,
                                    fresh=case.fresh, timeout=self.a.deadline, raw=case.raw)
        finally:
            for fd in fds:
                os.close(fd)

    def record(self, case: Case, res: Result):
        self.latency.setdefault(case.op, []).append(res.ms)
        self.outcomes[res.code] = self.outcomes.get(res.code, 0) + 1
        d = self.by_op.setdefault(case.op, {})
        d[res.code] = d.get(res.code, 0) + 1
        line = {"case": self.case_no, "op": case.op, "mutations": case.mutations, "result": res.code,
                "message": res.message[:300], "ms": round(res.ms, 1)}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def deadline_of(self, case: Case, res: Result) -> float:
        """When weftd may expire this connection: the caller's expiry less the call's timeout."""
        exp = None
        if any(m[0] == "set" and m[1] == tokens.EXPIRES_KEY for m in case.md_muts):
            return time.time()   # an expiry of the fuzzer's text: weftd may have taken it as any time
        if case.md_expiry is not None:
            exp = case.md_expiry.timestamp()
        else:
            exp = time.time() + tokens.DEFAULT_MAX_TOKEN_LIFETIME
        return exp - self.a.deadline

    def after(self, case: Case, res: Result, conns: dict):
        """Update the model from the answer and weftd's connections."""
        if case.method == "Request" and res.ok and case.raw is None:
            ans = res.answer
            segs = ans.path.path_segments
            i = ans.path.index + 1
            if i < len(segs):
                wid = segs[i].id
                if wid in conns:
                    c = conns[wid]
                    url = c.mechanism.parameters.get("inodeURL", "")
                    prefs = list(case.request.mechanism_preferences)
                    lv = Live(wid, ans, prefs, self.pod_of_url(url), c.mechanism.type, self.deadline_of(case, res), url)
                    self.live[wid] = lv
        if case.method == "Request" and not res.ok and case.raw is None and case.op.startswith("request"):
            segs = case.request.connection.path.path_segments
            if len(segs) >= 2 and len(self.failed_ids) < 200:
                self.failed_ids.append((segs[0].id, segs[1].id))
        if case.method == "Close" and res.ok:
            for w in case.removes:
                self.live.pop(w, None)
        # connections weftd holds that the model does not know: from a case that was accepted
        # in a form the model could not follow (e.g. the answer's path was cut)
        for wid in conns:
            if wid not in self.live:
                raise Violation(f"weftd holds connection {wid} that no accepted request of this run made "
                                f"(case {self.case_no} answered {res.code})")

    def check_result(self, case: Case, res: Result):
        if res.code in FORBIDDEN:
            raise Violation(f"{res.code} for {case.op} {case.mutations}: {res.message!r}")
        if res.code == "DEADLINE_EXCEEDED" or res.ms > self.a.deadline * 1000 + 500:
            raise Violation(f"no answer within {self.a.deadline} s ({res.ms:.0f} ms, {res.code}) for {case.op} {case.mutations}")
        if res.code == "DIAL_FAILED":
            raise Violation(f"cannot connect to weftd's NSM socket: {res.message}")
        if not res.ok and not res.message.strip():
            raise Violation(f"{res.code} without a message for {case.op} {case.mutations}")
        if case.expect_ok and not res.ok:
            raise Violation(f"a valid {case.op} was refused: {res.code} {res.message!r}")
        if case.method == "Monitor" and case.raw is None and not res.ok and res.code not in ("RESOURCE_EXHAUSTED",):
            raise Violation(f"MonitorConnections refused a selector: {res.code} {res.message!r}")

    def describe(self, case: Case) -> str:
        if case.raw is not None:
            return f"raw {case.method} {case.raw[:64]!r}... ({len(case.raw)} bytes)"
        s = str(case.request)
        return s if len(s) < 3000 else s[:3000] + f"... ({len(s)} chars)"

    def run(self) -> bool:
        t0 = time.monotonic()
        self.fd_base = self.fd_count()
        self.fd_kinds_start = fd_kinds(self.weftd["pid"])
        self.fd_keys_start = fd_keys(self.weftd["pid"])
        self.log(f"fuzz: seed {self.a.seed}, {self.a.count} cases; weftd pid {self.weftd['pid']} has {self.fd_base} fds")
        self.check_state(None)
        last_case = None
        try:
            for n in range(1, self.a.count + 1):
                self.case_no = n
                case = self.make_case()
                last_case = case
                res = self.run_case(case)
                self.record(case, res)
                try:
                    self.check_result(case, res)
                    why = self.alive()
                    if why:
                        raise Violation(why)
                    conns = self.check_state(case)
                    self.after(case, res, conns)
                except Violation as v:
                    self.violations.append({"case": n, "op": case.op, "mutations": case.mutations, "result": res.code,
                                            "message": res.message[:500], "violation": str(v)[:4000],
                                            "request": self.describe(case)})
                    self.log(f"VIOLATION at case {n}: {v}\nrequest:\n{self.describe(case)}")
                    if os.environ.get("FZ_DEBUG_HANG") and "no answer within" in str(v):
                        import faulthandler
                        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                        d = self.client.dialer
                        self.log(f"client: dialer conns {[(c.closed.is_set(), c.error) for c in d.conns] if d else None}")
                        ss = subprocess.run(["ss", "-xpn"], capture_output=True, text=True).stdout
                        open("/tmp/fz-hang-ss.txt", "w").write(ss)
                        for k in range(3):
                            r = subprocess.run(["gdb", "-batch", "-p", str(self.weftd["pid"]), "-ex", "thread apply all bt 30"],
                                               capture_output=True, text=True, timeout=120)
                            open(f"/tmp/fz-hang-gdb{k}.txt", "w").write(r.stdout + r.stderr)
                            time.sleep(1)
                    if not self.a.keep_going:
                        break
                    # the model follows weftd from here
                    self.resync()
                self.fd_max = max(self.fd_max, self.fd_count())
                if n % 200 == 0:
                    self.cl.nse.requests.clear()
                    self.cl.nse.closes.clear()
                    self.cl.nse.connections.clear()
                    self.cl.registry.finds.clear()
                    self.log(f"fuzz: {n}/{self.a.count}, {len(self.live)} held, {time.monotonic() - t0:.0f} s, "
                             f"fds {self.fd_count()} (base {self.fd_base}), outcomes {self.outcomes}")
        except Exception as e:  # noqa: BLE001
            self.violations.append({"case": self.case_no, "violation": f"harness error: {type(e).__name__}: {e}",
                                    "trace": traceback.format_exc()[-3000:],
                                    "request": self.describe(last_case) if last_case else ""})
            self.log(traceback.format_exc())
        self.elapsed = time.monotonic() - t0
        if not self.violations or self.a.keep_going:
            self.finish()
        return not self.violations

    def resync(self):
        try:
            conns = self.monitor()
        except Violation:
            return
        for w in list(self.live):
            if w not in conns:
                del self.live[w]
        for w, c in conns.items():
            if w not in self.live:
                # the caller's view of weftd's own: one index back
                ans = connection_pb2.Connection()
                ans.CopyFrom(c)
                ans.path.index = max(0, c.path.index - 1)
                ans.id = ans.path.path_segments[ans.path.index].id if ans.path.path_segments else c.id
                url = c.mechanism.parameters.get("inodeURL", "")
                self.live[w] = Live(w, ans, [], self.pod_of_url(url), c.mechanism.type, time.time() + 60, url)

    def finish(self):
        """Close everything held; then nothing may be left."""
        try:
            conns = self.monitor()
            left = []
            for wid, lv in list(self.live.items()):
                if wid not in conns:
                    continue
                case = self.case_close(lv)
                res = self.run_case(case)
                if not res.ok:
                    left.append(f"Close of held {wid} ({lv.kind}): {res.code} {res.message}")
            conns = self.monitor()
            if conns:
                left.append(f"MonitorConnections still shows {sorted(conns)}")
            probs = self.problems({})
            # expiries of connections not held may still be under way: give them a moment
            deadline = time.monotonic() + 5
            while probs and time.monotonic() < deadline:
                time.sleep(0.3)
                probs = self.problems({})
            left += probs
            if self.a.weftctl:
                for what in (["show", "interfaces"], ["show", "xconnects"]):
                    r = subprocess.run([self.a.weftctl, *what, "--socket", self.weftd["admin_socket"]],
                                       capture_output=True, text=True, timeout=30)
                    if r.returncode != 0 or "nsm-" in r.stdout:
                        left.append(f"weftctl {' '.join(what)}: rc {r.returncode}: {r.stdout[-500:]} {r.stderr[-300:]}")
            self.client.close()
            self.checker.close()
            # By design weftd keeps, after its connections are gone: the endpoint's socket it
            # got from the registry (for later Closes, for good), and the files a caller passed
            # as a mechanism's inodeURL until its sweep (30 s unused); --wait-sweep waits for those.
            nse = os.stat(self.cl.paths["nse_socket"])
            nse_key = (nse.st_dev, nse.st_ino)

            def held() -> tuple[int, int]:
                """weftd's fds beyond those it had at the start: of files the run passed, and others."""
                now = fd_keys(self.weftd["pid"])
                other = passed = 0
                for key, n in now.items():
                    extra = n - self.fd_keys_start.get(key, 0)
                    if extra <= 0 or key == nse_key:
                        continue
                    if key in self.passed:
                        passed += extra
                    else:
                        other += extra
                return other, passed
            deadline = time.monotonic() + 15
            while held()[0] > 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            other, passed = held()
            if other > 2:
                left.append(f"weftd has {other} fds more than at the start ({self.fd_base}) besides the endpoint's socket and "
                            f"{passed} of files the run passed it: now {fd_kinds(self.weftd['pid'])}; at the start {self.fd_kinds_start}")
            if self.a.wait_sweep:
                deadline = time.monotonic() + self.a.wait_sweep
                while held()[1] > 0 and time.monotonic() < deadline:
                    time.sleep(0.5)
                if held()[1] > 0:
                    left.append(f"weftd still holds {held()[1]} files the run passed it {self.a.wait_sweep} s after the end: "
                                f"{fd_kinds(self.weftd['pid'])}")
            self.fd_end = self.fd_count()
            self.fd_passed_end = held()[1]
            why = self.alive()
            if why:
                left.append(why)
            if left:
                self.violations.append({"case": "end", "violation": "; ".join(left)[:6000]})
                self.log("VIOLATION at the end: " + "\n".join(left))
        except Exception as e:  # noqa: BLE001
            self.violations.append({"case": "end", "violation": f"harness error: {type(e).__name__}: {e}",
                                    "trace": traceback.format_exc()[-3000:]})

    def summary(self) -> dict:
        el = getattr(self, "elapsed", 0.0) or 1e-9
        return {"summary": True, "seed": self.a.seed, "cases": self.case_no, "seconds": round(el, 1),
                "cases_per_s": round(self.case_no / el, 1), "outcomes": self.outcomes, "by_op": self.by_op,
                "fds": {"start": self.fd_base, "max": self.fd_max, "end": getattr(self, "fd_end", None),
                        "end_passed_by_the_run": getattr(self, "fd_passed_end", None)},
                "latency_ms": {op: {"n": len(v), "p50": round(sorted(v)[len(v) // 2], 1),
                                    "p95": round(sorted(v)[int(len(v) * 0.95)], 1), "max": round(max(v), 1)}
                               for op, v in self.latency.items() if v},
                "violations": self.violations, "ok": not self.violations,
                "replay": f"--seed {self.a.seed} --count {self.a.count}"}


def fd_keys(pid: int) -> Counter:
    """(st_dev, st_ino) of each fd of a process, counted."""
    out: Counter = Counter()
    try:
        for f in os.listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{f}")
                out[(st.st_dev, st.st_ino)] += 1
            except OSError:
                out[("?", f)] += 1
    except OSError:
        pass
    return out


def fd_targets(pid: int) -> list[str]:
    out = []
    try:
        for f in os.listdir(f"/proc/{pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{pid}/fd/{f}"))
            except OSError:
                pass
    except OSError:
        pass
    return out


def fd_kinds(pid: int) -> str:
    kinds: dict[str, int] = {}
    try:
        for f in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{f}")
            except OSError:
                continue
            k = t.split("[")[0] if "[" in t else t
            kinds[k] = kinds.get(k, 0) + 1
    except OSError:
        return "?"
    return ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda x: -x[1]))


# =============================================================================================
# set-up

def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=False, capture_output=True)


def make_pod(ns: str) -> dict:
    sh(f"ip netns del {ns} 2>/dev/null; ip netns add {ns} && ip -n {ns} link set lo up")
    path = f"/var/run/netns/{ns}"
    st = os.stat(path)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "infinity"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"ns": ns, "path": path, "key": (st.st_dev, st.st_ino), "url": f"inode://{st.st_dev}/{st.st_ino}", "proc": proc}


def weftd_header(tag: str, d: str) -> str:
    return f"""eal:
  main_lcore: 0
  hugepages: false
  memory_mb: 256
  file_prefix: wt-{tag}
dataplane:
  workers: [1]
  mbufs: 4095
  idle_sleep_us: 20
admin:
  socket: {d}/weftd.sock
  runtime_dir: {d}

"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--tag", default=None, help="4 hex digits naming this run's objects (default: random)")
    ap.add_argument("--weftd", default=None, help="start this weftd binary (else --stdio)")
    ap.add_argument("--weftctl", default=None, help="weftctl binary for the end check (default: next to --weftd)")
    ap.add_argument("--stdio", action="store_true", help="a test starts weftd: handshake on stdin/stdout")
    ap.add_argument("--out", default=None, help="case lines here (default: stdout)")
    ap.add_argument("--deadline", type=float, default=30.0,
                    help="seconds a call may take (a hang); generous: removing veths is slow on a loaded machine")
    ap.add_argument("--max-live", type=int, default=10, help="connections held before Closes are preferred")
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first violation")
    ap.add_argument("--wait-sweep", type=float, default=0,
                    help="at the end, wait up to this long for weftd to let go of the files the run passed it (its sweep: 30 s)")
    ap.add_argument("--peer-log", default=None, help="the peers' log (default: discarded)")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 2**32)
    tag = a.tag or f"{random.SystemRandom().randrange(1 << 16):04x}"
    if a.weftd and not a.weftctl:
        cand = os.path.join(os.path.dirname(os.path.abspath(a.weftd)), "weftctl")
        a.weftctl = cand if os.path.exists(cand) else None
    plog_f = open(a.peer_log, "a") if a.peer_log else None

    def plog(*x):
        if plog_f:
            plog_f.write(time.strftime("%H:%M:%S ") + " ".join(str(y) for y in x) + "\n")
            plog_f.flush()

    nsm_peers.log = plog
    # The endpoint waits for the fd of every inode URL in Weft's mechanism preferences; on a
    # refresh Weft offers the endpoint's own answer back (its netns URL, whose fd it does not
    # send again): 2 s per refresh. A short wait keeps the run fast; nothing else changes.
    _take_fd = nsm_peers._take_fd
    nsm_peers._take_fd = lambda recv_map, url, timeout=2.0: _take_fd(recv_map, url, min(timeout, 0.05))

    def log(msg: str):
        print(msg, file=sys.stderr, flush=True)

    name = f"weft-{tag}"
    cdir = f"/tmp/wt-fuzz-{tag}"
    pods, epod, cl, proc = [], None, None, None
    out = open(a.out, "w") if a.out else sys.stdout
    fz = None
    try:
        pods = [make_pod(f"wt{tag}c{i}") for i in range(2)]
        epod = make_pod(f"wt{tag}e")
        ns = argparse.Namespace(dir=cdir, trust_domain="spiffe://test.weft", weft_id=name, service=SERVICE,
                                payload="ETHERNET", nse_name=f"nse-{tag}", nse_netns=epod["path"],
                                nse_src="172.16.1.101/32", nse_dst="172.16.1.100/32", nse_url="inode", expiry=60,
                                registry_require_token=False)
        cl = cluster.Cluster(ns)
        rd = f"/run/weft/test-{tag}"
        nsm_yaml = (f"nsm:\n  name: {name}\n  listen_on: [unix://{rd}/nsm.sock]\n"
                    f"  connect_to: unix://{cdir}/registry.sock\n  spiffe_socket: unix://{cdir}/agent.sock\n"
                    f"  svid_timeout: 10s\n")
        if a.stdio:
            print(json.dumps({"ready": True, "tag": tag, "seed": a.seed, "name": name, "nsm_yaml": nsm_yaml}), flush=True)
            line = sys.stdin.readline()
            weftd = json.loads(line)
        elif a.weftd:
            os.makedirs(rd, exist_ok=True)
            with open(f"{rd}/weft.yaml", "w") as f:
                f.write(weftd_header(tag, rd) + nsm_yaml)
            wlog = open(f"/tmp/weftd-fuzz-{tag}.log", "w")
            proc = subprocess.Popen([a.weftd, "run", "--config", f"{rd}/weft.yaml", "--log-level", "debug"],
                                    stdin=subprocess.DEVNULL, stdout=wlog, stderr=wlog)
            weftd = {"pid": proc.pid, "admin_socket": f"{rd}/weftd.sock", "runtime_dir": rd}
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"weftd exited: see /tmp/weftd-fuzz-{tag}.log")
                try:
                    if admin(weftd["admin_socket"], {"command": "show-interfaces"}, 2).get("ok"):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("weftd did not start")
                time.sleep(0.1)
            log(f"fuzz: weftd pid {proc.pid}, log /tmp/weftd-fuzz-{tag}.log")
        else:
            ap.error("give --weftd or --stdio")
        # registered?
        deadline = time.monotonic() + 30
        while not any(r["nse"]["name"] == name for r in cl.registry.registrations):
            if time.monotonic() > deadline:
                raise SystemExit(f"weftd did not register as {name}")
            time.sleep(0.1)
        fz = Fuzzer(a, cl, name, pods, epod, weftd, out, log)
        fz.run()
        s = fz.summary()
    except BaseException as e:  # noqa: BLE001
        s = {"summary": True, "seed": a.seed, "ok": False,
             "violations": [{"case": "setup", "violation": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}]}
        if fz is not None:
            s = {**fz.summary(), **s, "violations": fz.violations + s["violations"]}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            sh(f"rm -rf /run/weft/test-{tag} /var/run/dpdk/wt-{tag}")
        if cl is not None:
            cl.stop()
        for p in pods + ([epod] if epod else []):
            p["proc"].kill()
            p["proc"].wait()
            sh(f"ip netns del {p['ns']}")
        sh(f"rm -rf {cdir}")
    line = json.dumps(s)
    if out is not sys.stdout:
        out.write(line + "\n")
        out.close()
    print(line, flush=True)
    return 0 if s.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
