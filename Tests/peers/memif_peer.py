#!/usr/bin/env python3
"""A memif client (DPDK 22.11 / libmemif wire protocol 2.0) for Weft's system tests.

Weft is the memif SERVER; this tool is the CLIENT: it creates the shared
memory (one memfd region sealed against shrinking: rings first, C2S then S2C,
each a 128-byte header + 16*N descriptors, then N buffers of 2048 bytes per
ring), one eventfd per ring, and speaks the control protocol (128-byte
messages on an AF_UNIX SOCK_SEQPACKET socket). Standard library only.

  memif_peer.py good --socket PATH [--id N] [--secret S] [--netns NS] [--log2 L]
                     [--count K] [--frame HEX] [--stamp] [--rate PPS]
                     [--listen SECONDS] [--echo] [--interrupt]
      Handshake, then send K frames into the C2S ring (respecting its free
      slots) while receiving from the S2C ring (buffers re-posted) for
      --listen seconds. --echo sends every received frame back (a loop peer;
      --count then defaults to 0). --interrupt leaves MASK_INT clear on the
      S2C ring and sleeps on its eventfd (a peer in interrupt mode). --stamp
      writes the frame's sequence number (u32, big endian) into bytes 14..17.
      Frames longer than 2048 bytes are chained (NEXT). Prints one JSON line:
      {"sent", "received", "received_frames_hex_sha256" (first 5),
       "connected", "disconnect_reason" (null while connected, the server's
       DISCONNECT string, or "EOF"), ...; "unexpected_control_messages" lists
      anything else the control socket delivered}. Exit 0 when it connected
      and stayed connected.

  memif_peer.py connect-close --socket PATH [--times N] [--stage connect|unread|hello|init]
      Connect and close N times (default 1000) as fast as possible; with
      --stage unread it waits for HELLO and closes without reading it (the
      server then sees ECONNRESET), with --stage hello it reads HELLO first,
      with --stage init it also sends INIT (and closes without reading the
      ACK). Prints {"done": N, ...} (with --server-pid: the server's fd count
      before and after).

  memif_peer.py garbage --socket PATH [--id N] [--secret S] [--skip-slow] [--seed S]
                     [--server-pid PID]
      Hostile control-plane cases, each on a fresh connection (the interface
      must have no peer). One JSON line per case: {"case", "disconnect" (the
      server's DISCONNECT string or null), "closed", "expect" (Weft's reason),
      "ok"}; then {"summary": {...}}. --secret is the interface's secret
      (then wrong and missing secrets are tested; without it a wrong secret
      must be accepted). --skip-slow skips the cases that wait for the 5 s
      handshake timeout (a silent client, one silent after INIT, 70 silent
      connections at once). --server-pid adds "server_fd_delta" per case (a
      non-zero delta fails the case). Exit 0 when every case behaved as expected.

  memif_peer.py bad-datapath --socket PATH --case X [--wait S]
                     [--feed-socket PATH [--feed-id N] [--feed-secret S]]
      A good handshake, then misbehave in shared memory. X is one of
      head-jump, desc-offset, desc-region, desc-length, chain-forever,
      s2c-corrupt, s2c-desc-offset (posted S2C buffers outside the region),
      stop-reading. Waits up to --wait seconds (default 3) for
      a DISCONNECT or EOF and prints {"case", "disconnected", "reason", ...}.
      The s2c-* cases and stop-reading need traffic towards this peer: either
      the test sends it, or --feed-socket makes this tool also connect as a
      good client to another interface (e.g. the other side of a cross
      connect) and send frames there during the wait. Exit 0 when the
      expected happened (disconnected with Weft's reason; for stop-reading:
      still connected).

Common options: --socket PATH ('@name' = abstract: a leading NUL and the name,
no trailing NUL), --id (default 0), --secret, --netns PATH (setns into that
network namespace before creating any socket), --timeout (control replies,
default 3 s).
"""
import argparse
import collections
import ctypes
import errno
import fcntl
import hashlib
import json
import mmap
import os
import random
import select
import socket
import struct
import sys
import time

# ---- protocol ------------------------------------------------------------------------------

MSG_SZ = 128
COOKIE = 0x3E31F20
VERSION = 0x0200
NAME_SZ = 32
SECRET_SZ = 24

NONE, ACK, HELLO, INIT, ADD_REGION, ADD_RING, CONNECT, CONNECTED, DISCONNECT = range(9)
TYPE_NAMES = {NONE: "NONE", ACK: "ACK", HELLO: "HELLO", INIT: "INIT", ADD_REGION: "ADD_REGION",
              ADD_RING: "ADD_RING", CONNECT: "CONNECT", CONNECTED: "CONNECTED", DISCONNECT: "DISCONNECT"}

RING_FLAG_C2S = 1          # ADD_RING flags
DESC_FLAG_NEXT = 1
RING_FLAG_MASK_INT = 1
MODE_ETHERNET, MODE_IP = 0, 1

RING_HDR = 128             # cookie u32@0, flags u16@4, head u16@6, tail u16@64, desc @128
DESC_SZ = 16               # flags u16@0, region u16@2, length u32@4, offset u32@8, metadata u32@12
BUF_SZ = 2048

F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_GET_SEALS = getattr(fcntl, "F_GET_SEALS", 1034)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
MFD_ALLOW_SEALING = getattr(os, "MFD_ALLOW_SEALING", 0x0002)
CLONE_NEWNET = 0x40000000


def msg(mtype, fmt="", *vals):
    """A 128-byte message: type u16 at 0, then the packed fields from offset 2."""
    b = bytearray(MSG_SZ)
    struct.pack_into("<H", b, 0, mtype)
    if fmt:
        struct.pack_into("<" + fmt, b, 2, *vals)
    return bytes(b)


def cstr(s, size):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return b[:size].ljust(size, b"\0")


def msg_init(mid, secret=None, version=VERSION, mode=MODE_ETHERNET, name="memif_peer.py"):
    return msg(INIT, "HIB24s32s", version, mid & 0xFFFFFFFF, mode, cstr(secret or b"", SECRET_SZ),
               cstr(name, NAME_SZ))


def msg_add_region(index, size):
    return msg(ADD_REGION, "HQ", index, size)


def msg_add_ring(c2s, index, region, offset, log2, private_hdr=0, flags=None):
    if flags is None:
        flags = RING_FLAG_C2S if c2s else 0
    return msg(ADD_RING, "HHHIBH", flags, index, region, offset, log2, private_hdr)


def msg_connect(name="memif_peer"):
    return msg(CONNECT, "32s", cstr(name, NAME_SZ))


def msg_hello():
    return msg(HELLO, "32sHHHHHB", cstr("memif_peer.py", NAME_SZ), VERSION, VERSION, 255, 255, 255, 14)


def zstr(b):
    return bytes(b).split(b"\0", 1)[0].decode("utf-8", "replace")


def parse(m):
    t = struct.unpack_from("<H", m, 0)[0]
    d = {"type": t, "name": TYPE_NAMES.get(t, str(t))}
    if t == HELLO:
        name, vmin, vmax, mreg, ms2c, mc2s, mlog2 = struct.unpack_from("<32sHHHHHB", m, 2)
        d.update(peer=zstr(name), min_version=vmin, max_version=vmax, max_region=mreg,
                 max_s2c_ring=ms2c, max_c2s_ring=mc2s, max_log2=mlog2)
    elif t in (CONNECT, CONNECTED):
        d["if_name"] = zstr(struct.unpack_from("32s", m, 2)[0])
    elif t == DISCONNECT:
        code, s = struct.unpack_from("<I96s", m, 2)
        d.update(code=code, reason=zstr(s))
    return d


# ---- sockets -----------------------------------------------------------------------------------

def enter_netns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):
            os.setns(fd, getattr(os, "CLONE_NEWNET", CLONE_NEWNET))
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns(%s): %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def sock_addr(path):
    # Python gives an address starting with NUL exactly its length: offsetof(sun_path) + 1 + len(name).
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


class Closed(Exception):
    """The server closed the control channel (EOF or reset)."""


class Ctl:
    """One control connection."""

    def __init__(self, path, timeout=3.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(timeout)
        self.timeout = timeout
        self.s.connect(sock_addr(path))
        self.eof = False
        self.unexpected = []  # messages after CONNECTED other than DISCONNECT: (length, hex of the first 16 bytes)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data, fds=()):
        if fds:
            return socket.send_fds(self.s, [data], list(fds))
        return self.s.send(data)

    def recv(self, timeout=None):
        """One message (bytes, possibly not 128 long). Raises Closed on EOF/reset, TimeoutError on timeout."""
        self.s.settimeout(self.timeout if timeout is None else timeout)
        try:
            data, anc, _flags, _addr = self.s.recvmsg(MSG_SZ + 1, socket.CMSG_SPACE(4 * 4))
        except socket.timeout:
            raise TimeoutError()
        except (ConnectionResetError, BrokenPipeError):
            # The kernel reports a reset (the server closed with messages of ours unread)
            # before what is still queued for us, once: the server's DISCONNECT may be
            # there. Seen in NSMChaosSystemTests (seed 5240838, step 57, random-300): the
            # reason was sent, and this read missed it.
            try:
                self.s.setblocking(False)
                data, anc, _flags, _addr = self.s.recvmsg(MSG_SZ + 1, socket.CMSG_SPACE(4 * 4))
            except OSError:
                data, anc = b"", []
            if not data:
                self.eof = True
                raise Closed()
        for level, ctype, cdata in anc:
            if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
                for fd in struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) - len(cdata) % 4]):
                    os.close(fd)  # the server never passes fds
        if not data:
            self.eof = True
            raise Closed()
        return data

    def recv_msg(self, timeout=None):
        return parse(self.recv(timeout).ljust(MSG_SZ, b"\0"))

    def poll(self):
        """Non-blocking: None while nothing happened; 'EOF' or the DISCONNECT reason when the server left."""
        try:
            r, _, _ = select.select([self.s], [], [], 0)
        except (OSError, ValueError):
            return "EOF"
        if not r:
            return None
        try:
            raw = self.recv(0.5)
        except Closed:
            return "EOF"
        except TimeoutError:
            return None
        m = parse(raw.ljust(MSG_SZ, b"\0"))
        if m["type"] == DISCONNECT and len(raw) == MSG_SZ:
            return m["reason"]
        if len(self.unexpected) < 10:
            self.unexpected.append((len(raw), raw[:16].hex()))
        return None  # anything else after CONNECTED is recorded, not acted on

    def wait_gone(self, timeout):
        """Wait for the server to leave: (disconnect reason or None, closed)."""
        reason, end = None, time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return reason, False
            try:
                m = self.recv_msg(left)
            except Closed:
                return reason, True
            except TimeoutError:
                return reason, False
            if m["type"] == DISCONNECT and reason is None:
                reason = m["reason"]


# ---- shared memory -------------------------------------------------------------------------

class Region:
    """One region: C2S ring, S2C ring, then N buffers for each (spec §3.1)."""

    def __init__(self, log2, seal=True, extra=0):
        self.log2 = log2
        self.n = 1 << log2
        self.mask = self.n - 1
        self.ring_bytes = RING_HDR + DESC_SZ * self.n
        self.c2s = 0
        self.s2c = self.ring_bytes
        self.buf_base = 2 * self.ring_bytes
        self.size = self.buf_base + 2 * self.n * BUF_SZ
        self.fd = os.memfd_create("memif_region_0", MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        if seal:
            fcntl.fcntl(self.fd, F_ADD_SEALS, F_SEAL_SHRINK)
        os.ftruncate(self.fd, self.size + extra)
        self.mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.u16 = memoryview(self.mm).cast("H")
        for ring, first in ((self.c2s, 0), (self.s2c, self.n)):
            struct.pack_into("<IHH", self.mm, ring, COOKIE, 0, 0)
            self.set_tail(ring, 0)
            for j in range(self.n):
                self.set_desc(ring, j, 0, 0, BUF_SZ, self.buf_off(first + j))

    def close(self):
        self.u16.release()
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass
        os.close(self.fd)

    def buf_off(self, slot):
        return self.buf_base + slot * BUF_SZ

    def desc_at(self, ring, slot):
        return ring + RING_HDR + (slot & self.mask) * DESC_SZ

    def set_desc(self, ring, slot, flags, region, length, offset):
        struct.pack_into("<HHII", self.mm, self.desc_at(ring, slot), flags, region, length, offset)

    def get_desc(self, ring, slot):
        return struct.unpack_from("<HHII", self.mm, self.desc_at(ring, slot))

    # Ring indices and flags: one aligned 16-bit load or store each (struct's '<H' would write
    # byte by byte, and a peer could see a torn index).
    def head(self, ring):
        return self.u16[(ring + 6) >> 1]

    def tail(self, ring):
        return self.u16[(ring + 64) >> 1]

    def set_head(self, ring, v):
        self.u16[(ring + 6) >> 1] = v & 0xFFFF

    def set_tail(self, ring, v):
        self.u16[(ring + 64) >> 1] = v & 0xFFFF

    def flags(self, ring):
        return self.u16[(ring + 4) >> 1]

    def set_flags(self, ring, v):
        self.u16[(ring + 4) >> 1] = v & 0xFFFF


class Client:
    """A good memif client with one C2S and one S2C ring."""

    def __init__(self, args, path=None, mid=None, secret=None):
        self.args = args
        self.path = path or args.socket
        self.mid = args.id if mid is None else mid
        self.secret = args.secret if secret is None else secret
        self.ctl = None
        self.reg = None
        self.efd_c2s = self.efd_s2c = -1
        self.connected = False
        self.reason = None
        self.hello = None
        # data path state
        self.tx_head = 0     # C2S: our produce index
        self.rx_last = 0     # S2C: our consume index
        self.rx_post = 0     # S2C: buffers posted (our head)
        self.bad_rx_desc = 0
        self.tx_full = 0

    def close(self):
        if self.ctl:
            self.ctl.close()
        for fd in (self.efd_c2s, self.efd_s2c):
            if fd >= 0:
                os.close(fd)
        self.efd_c2s = self.efd_s2c = -1
        if self.reg:
            self.reg.close()
            self.reg = None

    def _step(self, data, fds, want):
        """Send one message, wait for its reply (ACK or CONNECTED). False when refused."""
        self.ctl.send(data, fds)
        while True:
            try:
                m = self.ctl.recv_msg()
            except Closed:
                self.reason = self.reason or "EOF"
                return False
            except TimeoutError:
                self.reason = "timeout waiting for %s" % TYPE_NAMES[want]
                return False
            if m["type"] == want:
                return True
            if m["type"] == DISCONNECT:
                self.reason = m["reason"]
                return False
            self.reason = "unexpected %s from the server" % m["name"]
            return False

    def handshake(self):
        self.ctl = Ctl(self.path, self.args.timeout)
        try:
            self.hello = h = self.ctl.recv_msg()
        except (Closed, TimeoutError) as e:
            self.reason = "no HELLO (%s)" % ("EOF" if isinstance(e, Closed) else "timeout")
            return False
        if h["type"] != HELLO:
            self.reason = h.get("reason") or "expected HELLO, got %s" % h["name"]
            return False
        if h["min_version"] > VERSION or h["max_version"] < VERSION:
            self.reason = "incompatible server version %#x..%#x" % (h["min_version"], h["max_version"])
            return False
        log2 = min(self.args.log2, h["max_log2"])
        self.reg = r = Region(log2)
        self.efd_c2s = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.efd_s2c = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        steps = [
            (msg_init(self.mid, self.secret), (), ACK),
            (msg_add_region(0, r.size), (r.fd,), ACK),
            (msg_add_ring(True, 0, 0, r.c2s, log2), (self.efd_c2s,), ACK),
            (msg_add_ring(False, 0, 0, r.s2c, log2), (self.efd_s2c,), ACK),
            (msg_connect(), (), CONNECTED),
        ]
        for data, fds, want in steps:
            if not self._step(data, fds, want):
                return False
        # CONNECTED: the server has reset the rings; ours now (spec §4.5).
        for ring in (r.c2s, r.s2c):
            r.set_head(ring, 0)
            r.set_tail(ring, 0)
        # We poll the ring we receive on (MASK_INT), or ask for its eventfd (--interrupt).
        r.set_flags(r.s2c, 0 if getattr(self.args, "interrupt", False) else RING_FLAG_MASK_INT)
        for j in range(r.n):
            r.set_desc(r.s2c, j, 0, 0, BUF_SZ, r.buf_off(r.n + j))
        self.tx_head, self.rx_last, self.rx_post = 0, 0, r.n
        r.set_head(r.s2c, r.n)
        self.connected = True
        return True

    # -- data path ------------------------------------------------------------------------
    def tx(self, frame):
        """Put one frame into C2S (chained over buffers when longer than one). False when full."""
        r = self.reg
        need = max(1, (len(frame) + BUF_SZ - 1) // BUF_SZ)
        tail = r.tail(r.c2s)
        used = (self.tx_head - tail) & 0xFFFF
        if used > r.n or r.n - used < need:
            self.tx_full += 1
            return False
        slot = self.tx_head
        for i in range(need):
            chunk = frame[i * BUF_SZ:(i + 1) * BUF_SZ]
            off = r.buf_off(slot & r.mask)
            r.mm[off:off + len(chunk)] = chunk
            r.set_desc(r.c2s, slot, DESC_FLAG_NEXT if i < need - 1 else 0, 0, len(chunk), off)
            slot = (slot + 1) & 0xFFFF
        self.tx_head = slot
        r.set_head(r.c2s, slot)   # the whole chain at once
        return True

    def kick(self):
        """The C2S eventfd, when the server asked for interrupts."""
        if not (self.reg.flags(self.reg.c2s) & RING_FLAG_MASK_INT):
            try:
                os.eventfd_write(self.efd_c2s, 1)
            except OSError:
                pass

    def rx(self, repost=True):
        """Frames the server put in S2C since the last call."""
        r = self.reg
        end = r.tail(r.s2c)
        frames = []
        cur = self.rx_last
        while cur != end:
            s, data, bad, complete = cur, bytearray(), False, False
            while s != end:
                flags, region, length, off = r.get_desc(r.s2c, s)
                s = (s + 1) & 0xFFFF
                if region != 0 or off + length > r.size or length > BUF_SZ:
                    bad = True
                else:
                    data += r.mm[off:off + length]
                if not flags & DESC_FLAG_NEXT:
                    complete = True
                    break
            if not complete:
                break  # a chain not published whole: wait for the rest
            cur = s
            if bad:
                self.bad_rx_desc += 1
            else:
                frames.append(bytes(data))
        self.rx_last = cur
        if repost:
            self.repost()
        return frames

    def repost(self):
        r = self.reg
        want = (self.rx_last + r.n) & 0xFFFF
        post = self.rx_post
        if post == want:
            return
        while post != want:
            r.set_desc(r.s2c, post, 0, 0, BUF_SZ, r.buf_off(r.n + (post & r.mask)))
            post = (post + 1) & 0xFFFF
        self.rx_post = post
        r.set_head(r.s2c, post)


def default_frame():
    payload = bytes(range(46))
    return bytes.fromhex("020000000002" "020000000001" "88b5") + payload


def fd_count(pid):
    """How many fds the server process holds (--server-pid), or None."""
    if not pid:
        return None
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def out(obj):
    print(json.dumps(obj), flush=True)


# ---- good ------------------------------------------------------------------------------------

def run_good(args):
    frame = bytes.fromhex(args.frame) if args.frame else default_frame()
    count = args.count if args.count is not None else (0 if args.echo else 100)
    if args.stamp and len(frame) < 18:
        frame = frame.ljust(18, b"\0")
    c = Client(args)
    res = {"sent": 0, "received": 0, "received_frames_hex_sha256": [], "connected": False,
           "disconnect_reason": None}
    try:
        ok = c.handshake()
    except OSError as e:
        ok = False
        c.reason = "%s: %s" % (type(e).__name__, e)
    res["connected"] = ok
    if not ok:
        res["disconnect_reason"] = c.reason
        if c.hello and c.hello["type"] == HELLO:
            res["server"] = c.hello["peer"]
        c.close()
        out(res)
        return 1
    res["server"] = c.hello["peer"]
    res["log2"] = c.reg.log2
    sent = received = echoed = echo_dropped = 0
    rx_bytes = 0
    hashes = []
    echo_q = collections.deque()
    interrupts = 0
    t0 = time.monotonic()
    end = t0 + args.listen
    hard_end = end + max(10.0, args.listen)
    gap = 1.0 / args.rate if args.rate else 0.0
    next_tx = t0
    reason = None
    while True:
        now = time.monotonic()
        if now >= hard_end or (now >= end and sent >= count and not echo_q):
            break
        busy = False
        # receive
        frames = c.rx()
        if frames:
            busy = True
            for f in frames:
                received += 1
                rx_bytes += len(f)
                if len(hashes) < 5:
                    hashes.append(hashlib.sha256(f).hexdigest())
                if args.echo:
                    if len(echo_q) < 4096:
                        echo_q.append(f)
                    else:
                        echo_dropped += 1
        # send: echoes first, then our own frames
        did_tx = False
        while echo_q and c.tx(echo_q[0]):
            echo_q.popleft()
            echoed += 1
            did_tx = True
        while sent < count and not echo_q and now >= next_tx:
            f = frame
            if args.stamp:
                f = frame[:14] + struct.pack(">I", sent & 0xFFFFFFFF) + frame[18:]
            if not c.tx(f):
                break
            sent += 1
            did_tx = True
            if gap:
                next_tx += gap
                break
        if did_tx:
            c.kick()
            busy = True
        reason = c.ctl.poll()
        if reason is not None:
            break
        if not busy:
            if args.interrupt:
                # sleep until the server signals the S2C eventfd (or the control socket moves)
                rd, _, _ = select.select([c.efd_s2c, c.ctl.s], [], [], 0.05 if sent < count else 0.2)
                if c.efd_s2c in rd:
                    try:
                        os.eventfd_read(c.efd_s2c)
                        interrupts += 1
                    except OSError:
                        pass
            else:
                time.sleep(0.0005)
    # a last look at what arrived
    if reason is None:
        for f in c.rx():
            received += 1
            rx_bytes += len(f)
            if len(hashes) < 5:
                hashes.append(hashlib.sha256(f).hexdigest())
    res.update(sent=sent, received=received, received_frames_hex_sha256=hashes, disconnect_reason=reason,
               received_bytes=rx_bytes, tx_ring_full=c.tx_full, bad_rx_desc=c.bad_rx_desc,
               seconds=round(time.monotonic() - t0, 3))
    if reason is not None:
        res["connected"] = False
    if args.echo:
        res.update(echoed=echoed, echo_dropped=echo_dropped)
    if args.interrupt:
        res["interrupts"] = interrupts
    if c.ctl.unexpected:
        res["unexpected_control_messages"] = c.ctl.unexpected
    c.close()
    out(res)
    return 0 if res["connected"] else 1


# ---- connect-close ------------------------------------------------------------------------

def run_connect_close(args):
    errors = collections.Counter()
    retries = 0
    fds_before = fd_count(args.server_pid)
    for _ in range(args.times):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(args.timeout)
            for _try in range(1000):
                try:
                    s.connect(sock_addr(args.socket))
                    break
                except BlockingIOError:
                    # the listen backlog is full (a timeout makes connect non-blocking): again
                    retries += 1
                    time.sleep(0.001)
            else:
                raise TimeoutError("listen backlog full")
            if args.stage == "unread":
                # close with HELLO unread: the server's next recvmsg fails with ECONNRESET
                select.select([s], [], [], args.timeout)
            if args.stage in ("hello", "init"):
                s.recv(MSG_SZ)
            if args.stage == "init":
                s.send(msg_init(args.id, args.secret))
            s.close()
        except OSError as e:
            errors[errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__] += 1
            try:
                s.close()
            except OSError:
                pass
    res = {"done": args.times, "stage": args.stage, "errors": dict(errors), "backlog_full_retries": retries}
    if args.server_pid:
        time.sleep(0.3)  # the server's last closes
        res.update(server_fds_before=fds_before, server_fds_after=fd_count(args.server_pid))
    out(res)
    return 0


# ---- garbage ------------------------------------------------------------------------------

class Case:
    """A fresh connection that has read HELLO; helpers to get through the handshake."""

    def __init__(self, args):
        self.args = args
        self.ctl = Ctl(args.socket, args.timeout)
        self.hello = self.ctl.recv_msg()
        self.fds = []
        self.early = None  # a DISCONNECT / EOF met before the case's own message

    def own(self, fd):
        self.fds.append(fd)
        return fd

    def memfd(self, size, seal=True, extra=0):
        fd = self.own(os.memfd_create("memif_region_0", MFD_ALLOW_SEALING | os.MFD_CLOEXEC))
        if seal:
            fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK)
        os.ftruncate(fd, size + extra)
        return fd

    def efd(self):
        return self.own(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))

    def step(self, data, fds=()):
        """A message that must be ACKed (preparation); False (and self.early) when it is not."""
        if self.early is not None:
            return False
        self.ctl.send(data, fds)
        try:
            m = self.ctl.recv_msg()
        except Closed:
            self.early = "EOF before ACK"
            return False
        except TimeoutError:
            self.early = "no ACK"
            return False
        if m["type"] != ACK:
            self.early = "%s instead of ACK%s" % (m["name"], (": " + m["reason"]) if "reason" in m else "")
            return False
        return True

    def init(self):
        return self.step(msg_init(self.args.id, self.args.secret))

    def region(self, reg):
        return self.step(msg_add_region(0, reg.size), (reg.fd,))

    def rings(self, reg):
        return (self.step(msg_add_ring(True, 0, 0, reg.c2s, reg.log2), (self.efd(),)) and
                self.step(msg_add_ring(False, 0, 0, reg.s2c, reg.log2), (self.efd(),)))

    def send(self, data, fds=()):
        if self.early is None:
            try:
                self.ctl.send(data, fds)
            except OSError as e:
                self.early = "send: %s" % e

    def close(self):
        self.ctl.close()
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass


def garbage_cases(args):
    """(name, expected DISCONNECT reason (None: just closed, '*': any), body, timeout)."""
    unknown_id = (args.id + 1000) & 0xFFFFFFFF
    cases = []

    def case(name, expect, timeout=None):
        def deco(fn):
            cases.append((name, expect, fn, timeout))
            return fn
        return deco

    @case("short-message", "Invalid message size")
    def _(c):
        c.send(b"\x03\x00" + b"\0" * 8)

    @case("long-message", "Invalid message size")
    def _(c):
        c.send(msg_init(args.id, args.secret) + b"\0" * 72)

    @case("unknown-type-99", "Unknown message type")
    def _(c):
        c.send(msg(99))

    @case("type-0-none", "Unknown message type")
    def _(c):
        c.send(msg(NONE))

    @case("init-wrong-version", "Incompatible memif version")
    def _(c):
        c.send(msg_init(args.id, args.secret, version=0x0100))

    @case("init-unknown-id", "ID not found")
    def _(c):
        c.send(msg_init(unknown_id, args.secret))

    if args.secret:
        @case("init-wrong-secret", "Incorrect secret")
        def _(c):
            c.send(msg_init(args.id, "not-" + args.secret[:18]))

        @case("init-no-secret", "Secret required")
        def _(c):
            c.send(msg_init(args.id, None))
    else:
        # The interface has no secret (none given here): any secret is accepted.
        @case("init-wrong-secret", "ACCEPTED")
        def _(c):
            c.send(msg_init(args.id, "wrong-secret"))

    @case("init-mode-ip", "Only ethernet mode supported")
    def _(c):
        c.send(msg_init(args.id, args.secret, mode=MODE_IP))

    @case("init-twice", "Unexpected message")
    def _(c):
        if c.init():
            c.send(msg_init(args.id, args.secret))

    @case("add-region-before-init", "Unexpected message")
    def _(c):
        c.send(msg_add_region(0, 1 << 20), (c.memfd(1 << 20),))

    @case("add-region-no-fd", "Missing region fd")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 1 << 20))

    @case("add-region-index-5", "Invalid region index")
    def _(c):
        if c.init():
            c.send(msg_add_region(5, 1 << 20), (c.memfd(1 << 20),))

    @case("add-region-unsealed", "Region must be sealed against shrinking")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 1 << 20), (c.memfd(1 << 20, seal=False),))

    @case("add-region-size-past-file", "Invalid region size")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 1 << 21), (c.memfd(1 << 20),))

    @case("add-region-size-0", "Invalid region size")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 0), (c.memfd(1 << 20),))

    @case("add-region-eventfd", "Invalid region size")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 4096), (c.efd(),))

    @case("add-region-17", "Invalid region index")
    def _(c):
        if c.init():
            for i in range(16):
                if not c.step(msg_add_region(i, 4096), (c.memfd(4096),)):
                    return
            c.send(msg_add_region(16, 4096), (c.memfd(4096),))

    @case("add-ring-no-fd", "Missing interrupt fd")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if c.init() and c.region(reg):
            c.send(msg_add_ring(True, 0, 0, reg.c2s, 6))

    for name, log2, phs in (("add-ring-log2-0", 0, 0), ("add-ring-log2-20", 20, 0),
                            ("add-ring-private-hdr-8", 6, 8)):
        @case(name, "Invalid ring")
        def _(c, log2=log2, phs=phs):
            reg = Region(6)
            c.fds.append(reg.fd)
            if c.init() and c.region(reg):
                c.send(msg_add_ring(True, 0, 0, reg.c2s, log2, phs), (c.efd(),))

    @case("add-ring-c2s-index-7", "Invalid ring")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if c.init() and c.region(reg):
            idx = max(7, c.hello.get("max_c2s_ring", 0) + 1)
            c.send(msg_add_ring(True, idx, 0, reg.c2s, 6), (c.efd(),))

    @case("add-ring-twice", "Invalid ring")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if c.init() and c.region(reg) and c.step(msg_add_ring(True, 0, 0, reg.c2s, 6), (c.efd(),)):
            c.send(msg_add_ring(True, 0, 0, reg.c2s, 6), (c.efd(),))

    @case("connect-no-rings", "Regions or rings missing")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if c.init() and c.region(reg):
            c.send(msg_connect())

    @case("connect-ring-gap", "Regions or rings missing")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if (c.init() and c.region(reg) and c.step(msg_add_ring(True, 0, 0, reg.c2s, 6), (c.efd(),)) and
                c.step(msg_add_ring(False, 1, 0, reg.s2c, 6), (c.efd(),))):
            c.send(msg_connect())

    @case("connect-ring-past-region", "Invalid ring (place or cookie)")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if (c.init() and c.region(reg) and
                c.step(msg_add_ring(True, 0, 0, reg.size - 64, 6), (c.efd(),)) and
                c.step(msg_add_ring(False, 0, 0, reg.s2c, 6), (c.efd(),))):
            c.send(msg_connect())

    @case("connect-ring-region-1", "Invalid ring (place or cookie)")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if (c.init() and c.region(reg) and c.step(msg_add_ring(True, 0, 1, reg.c2s, 6), (c.efd(),)) and
                c.step(msg_add_ring(False, 0, 0, reg.s2c, 6), (c.efd(),))):
            c.send(msg_connect())

    @case("connect-bad-cookie", "Invalid ring (place or cookie)")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        struct.pack_into("<I", reg.mm, reg.c2s, 0xDEADBEEF)
        if c.init() and c.region(reg) and c.rings(reg):
            c.send(msg_connect())

    @case("connect-twice", "Unexpected message")
    def _(c):
        reg = Region(6)
        c.fds.append(reg.fd)
        if c.init() and c.region(reg) and c.rings(reg):
            c.ctl.send(msg_connect())
            m = c.ctl.recv_msg()
            if m["type"] != CONNECTED:
                c.early = "%s instead of CONNECTED" % m["name"]
                return
            c.send(msg_connect())

    @case("hello-to-server", "Unexpected message")
    def _(c):
        c.send(msg_hello())

    @case("ack-to-server", "Unexpected message")
    def _(c):
        c.send(msg(ACK))

    @case("connected-to-server", "Unexpected message")
    def _(c):
        if c.init():
            c.send(msg(CONNECTED))

    @case("two-fds-in-add-region", "Missing region fd")
    def _(c):
        if c.init():
            c.send(msg_add_region(0, 1 << 20), (c.memfd(1 << 20), c.efd()))

    @case("disconnect-before-init", None)
    def _(c):
        c.send(msg(DISCONNECT, "I96s", 0, cstr("bye", 96)))

    if not args.skip_slow:
        @case("silent-client", "Handshake timeout", timeout=8.0)
        def _(c):
            pass

        @case("silent-after-init", "Handshake timeout", timeout=8.0)
        def _(c):
            c.init()

    @case("random-300", "*")
    def _(c):
        rnd = random.Random(args.seed)
        c.ctl.s.settimeout(1.0)
        for i in range(300):
            try:
                c.ctl.send(bytes(rnd.getrandbits(8) for _ in range(MSG_SZ)))
            except OSError:
                break
    return cases


def flood_case(args, n=70):
    """n silent connections at once: the server serves a bounded number (Weft: 64 unfinished
    handshakes per socket) and closes every one of them by its handshake timeout."""
    rec = {"case": "pending-flood-%d" % n, "disconnect": None, "closed": False, "expect": "Handshake timeout"}
    socks, hellos, refused = [], 0, 0
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(args.timeout)
            s.connect(sock_addr(args.socket))
            socks.append(s)
            time.sleep(0.002)
        for s in socks:
            try:
                m = s.recv(MSG_SZ)
            except (socket.timeout, ConnectionResetError):
                m = b""
            if m[:2] == struct.pack("<H", HELLO):
                hellos += 1
            else:
                refused += 1
        end, reasons, closed = time.monotonic() + 8.0, collections.Counter(), 0
        for s in socks:
            reason = None
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    m = s.recv(MSG_SZ)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    m = b""
                if not m:
                    closed += 1
                    break
                p = parse(m.ljust(MSG_SZ, b"\0"))
                if p["type"] == DISCONNECT:
                    reason = p["reason"]
            reasons[reason] += 1
        rec.update(hello=hellos, refused_at_once=refused, closed_count=closed,
                   reasons={str(k): v for k, v in reasons.items()})
        rec["closed"] = closed == n
        rec["disconnect"] = "Handshake timeout" if reasons.get("Handshake timeout") else None
        rec["ok"] = rec["closed"] and hellos <= 64 and reasons.get("Handshake timeout", 0) == hellos
    except OSError as e:
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        rec["ok"] = False
    finally:
        for s in socks:
            s.close()
    return rec


def run_garbage(args):
    results = []
    fails = []
    for name, expect, body, timeout in garbage_cases(args):
        rec = {"case": name, "disconnect": None, "closed": False, "expect": expect}
        fds_before = fd_count(args.server_pid)
        c = None
        try:
            c = Case(args)
            if c.hello["type"] != HELLO:
                rec["error"] = "no HELLO: %s" % c.hello
            else:
                body(c)
                if c.early is not None:
                    rec["error"] = "setup: %s" % c.early
                elif expect == "ACCEPTED":
                    m = c.ctl.recv_msg()
                    rec["reply"] = m["name"]
                    rec["disconnect"] = m.get("reason")
                else:
                    rec["disconnect"], rec["closed"] = c.ctl.wait_gone(timeout or args.timeout)
        except Closed:
            rec["closed"] = True
        except (OSError, TimeoutError) as e:
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            if c is not None:
                c.close()
        if args.server_pid:
            time.sleep(0.05)
            after = fd_count(args.server_pid)
            if after is None or fds_before is None:
                rec["server_fd_delta"] = None
                rec["error"] = "server pid %d is gone" % args.server_pid
            else:
                rec["server_fd_delta"] = after - fds_before
        if expect == "ACCEPTED":
            rec["ok"] = "error" not in rec and rec.get("reply") == "ACK"
        elif expect == "*":
            rec["ok"] = "error" not in rec and rec["closed"] and rec["disconnect"] is not None
        else:
            rec["ok"] = "error" not in rec and rec["closed"] and rec["disconnect"] == expect
        if rec.get("server_fd_delta"):
            rec["ok"] = False
        if not rec["ok"]:
            fails.append(name)
        results.append(rec)
        out(rec)
    if not args.skip_slow:
        rec = flood_case(args)
        if not rec["ok"]:
            fails.append(rec["case"])
        results.append(rec)
        out(rec)
    out({"summary": {"cases": len(results), "ok": len(results) - len(fails), "failed": fails,
                     "disconnected": sum(1 for r in results if r["disconnect"] is not None),
                     "closed": sum(1 for r in results if r["closed"])}})
    return 0 if not fails else 1


# ---- bad-datapath ---------------------------------------------------------------------------

BAD_CASES = ("head-jump", "desc-offset", "desc-region", "desc-length", "chain-forever", "s2c-corrupt",
             "s2c-desc-offset", "stop-reading")
BAD_EXPECT = {
    "head-jump": "Ring index out of range",
    "desc-offset": "Descriptor outside its region",
    "desc-region": "Descriptor outside its region",
    "desc-length": "Descriptor outside its region",
    "chain-forever": "Frame chained over too many buffers",
    "s2c-corrupt": "Ring index out of range",
    "s2c-desc-offset": "Descriptor outside its region",
    "stop-reading": None,
}


def run_bad_datapath(args):
    case = args.case
    c = Client(args)
    res = {"case": case, "disconnected": False, "reason": None, "expect": BAD_EXPECT[case]}
    try:
        ok = c.handshake()
    except OSError as e:
        ok, c.reason = False, "%s: %s" % (type(e).__name__, e)
    if not ok:
        res.update(error="handshake failed: %s" % c.reason)
        c.close()
        out(res)
        return 2
    feeder = None
    if args.feed_socket:
        feeder = Client(args, path=args.feed_socket, mid=args.feed_id,
                        secret=args.feed_secret if args.feed_secret is not None else args.secret)
        try:
            if not feeder.handshake():
                res["feed_error"] = feeder.reason
                feeder.close()
                feeder = None
        except OSError as e:
            res["feed_error"] = str(e)
            feeder = None
    r = c.reg
    n = r.n
    if case == "head-jump":
        r.set_head(r.c2s, r.tail(r.c2s) + n + 5)
    elif case in ("desc-offset", "desc-region", "desc-length"):
        h = c.tx_head
        off, region, length = r.buf_off(0), 0, 60
        if case == "desc-offset":
            off = r.size + 4096
        elif case == "desc-region":
            region = 3
        else:
            length = 0x7FFFFFFF
        r.set_desc(r.c2s, h, 0, region, length, off)
        c.tx_head = (h + 1) & 0xFFFF
        r.set_head(r.c2s, c.tx_head)
    elif case == "chain-forever":
        if n <= 64:
            res["warning"] = "a ring of %d slots cannot hold a chain of more than 64" % n
        h = c.tx_head
        for i in range(n):
            r.set_desc(r.c2s, h + i, DESC_FLAG_NEXT, 0, 64, r.buf_off((h + i) & r.mask))
        c.tx_head = (h + n) & 0xFFFF
        r.set_head(r.c2s, c.tx_head)
    elif case == "s2c-corrupt":
        r.set_head(r.s2c, r.tail(r.s2c) + 2 * n)
    elif case == "s2c-desc-offset":
        for j in range(n):
            r.set_desc(r.s2c, j, 0, 0, BUF_SZ, r.size + 4096)
    # stop-reading: the buffers posted at CONNECTED, then nothing.
    c.kick()
    t0 = time.monotonic()
    end = t0 + args.wait
    fed = 0
    frame = bytes.fromhex(args.frame) if args.frame else default_frame()
    while time.monotonic() < end:
        reason = c.ctl.poll()
        if reason is not None:
            res.update(disconnected=True, reason=reason, after_s=round(time.monotonic() - t0, 3))
            break
        if feeder is not None:
            k = 0
            while k < 32 and feeder.tx(frame):
                k += 1
            fed += k
            if k:
                feeder.kick()
            feeder.rx()
            if feeder.ctl.poll() is not None:
                res["feed_error"] = "feeder disconnected"
                feeder.close()
                feeder = None
        time.sleep(0.001)
    res["s2c_filled"] = r.tail(r.s2c)
    if args.feed_socket:
        res["fed"] = fed
    if case == "stop-reading":
        res["ok"] = not res["disconnected"]
    else:
        res["ok"] = res["disconnected"] and res["reason"] == BAD_EXPECT[case]
    if feeder is not None:
        feeder.close()
    c.close()
    out(res)
    return 0 if res["ok"] else 1


# ---- main ---------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description="memif client peer for Weft's system tests",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("mode", choices=("good", "connect-close", "garbage", "bad-datapath"))
    p.add_argument("--socket", required=True, help="socket path, or @name for an abstract name")
    p.add_argument("--id", type=int, default=0)
    p.add_argument("--secret", default=None)
    p.add_argument("--netns", default=None, help="network namespace file to enter first")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for a control reply")
    p.add_argument("--log2", type=int, default=8, help="ring size (log2), default 8")
    # good
    p.add_argument("--count", type=int, default=None, help="frames to send (default 100; 0 with --echo)")
    p.add_argument("--frame", default=None, help="the Ethernet frame to send, as hex")
    p.add_argument("--stamp", action="store_true", help="sequence number (u32 BE) in bytes 14..17")
    p.add_argument("--rate", type=float, default=0.0, help="frames per second (0: as fast as the ring allows)")
    p.add_argument("--listen", type=float, default=2.0, help="seconds to receive (good)")
    p.add_argument("--echo", action="store_true", help="send every received frame back")
    p.add_argument("--interrupt", action="store_true",
                   help="leave MASK_INT clear on S2C and sleep on its eventfd (interrupt mode)")
    # connect-close
    p.add_argument("--times", type=int, default=1000)
    p.add_argument("--stage", choices=("connect", "unread", "hello", "init"), default="connect")
    p.add_argument("--server-pid", type=int, default=0,
                   help="the server's pid: report its fd count around connect-close and each garbage case")
    # garbage
    p.add_argument("--skip-slow", action="store_true", help="skip the handshake-timeout cases")
    p.add_argument("--seed", type=int, default=1)
    # bad-datapath
    p.add_argument("--case", choices=BAD_CASES)
    p.add_argument("--wait", type=float, default=3.0)
    p.add_argument("--feed-socket", default=None, help="also connect here as a good client and send frames")
    p.add_argument("--feed-id", type=int, default=0)
    p.add_argument("--feed-secret", default=None)
    args = p.parse_args()
    if not 1 <= args.log2 <= 14:
        p.error("--log2 must be 1..14")
    if args.secret is not None and len(args.secret.encode()) > SECRET_SZ - 1:
        p.error("--secret: at most 23 bytes")
    if args.mode == "bad-datapath" and not args.case:
        p.error("bad-datapath needs --case")
    if args.netns:
        enter_netns(args.netns)
    fn = {"good": run_good, "connect-close": run_connect_close, "garbage": run_garbage,
          "bad-datapath": run_bad_datapath}[args.mode]
    return fn(args)


if __name__ == "__main__":
    sys.exit(main())
