"""grpcfd for Python peers: SCM_RIGHTS fd passing under a gRPC connection, plus SPIFFE mTLS.

grpcio cannot attach ancillary data to its own socket writes, so grpcio never touches the
real unix socket. Each real connection is carried by a proxy thread:

    grpcio (plaintext h2, TCP 127.0.0.1) <-> proxy thread <-> real unix socket (TLS or plain)

Wire behaviour on the real socket (as edwarnicke/grpcfd connwrap.go does it):
  * sending: fds queued with send_fd() ride on the next bytes written, one fd per byte:
    for each queued fd (at most 64 per write) one sendmsg() of 1 byte with
    SCM_RIGHTS=[fd]; the rest of the buffer follows with a plain send. The queued fd
    (our own dup) is closed once sent.
  * receiving: every read is a recvmsg(); every fd that arrives is fstat()ed and kept in a
    map keyed by (st_dev, st_ino); a second fd for a key already held is closed.
    A consumer takes it by its URL "inode://<st_dev>/<st_ino>" (decimal; grpcfd url.go
    FDToURL/URLToDevIno) with a bounded wait and gets a dup of it.
  * the bytes are otherwise opaque: with TLS on, the fds ride on TLS record bytes.

TLS is terminated in the proxy (Python's ssl with memory BIOs), not in grpcio: grpcio's
client insists on a hostname match (SVIDs only carry a URI SAN) and offers no SPIFFE
verification hook. What goes on the wire is ordinary TLS >= 1.2, ALPN "h2", client
certificate required, peer chain verified against the trust domain bundle and the peer's
SPIFFE ID checked (go-spiffe tlsconfig.MTLSServerConfig / MTLSClientConfig with
AuthorizeAny(): any ID of the bundle's trust domain).

A server-side grpcio handler finds its connection with conn_for(context) (by the
proxy's inner TCP port, which is what context.peer() shows).
"""
from __future__ import annotations

import array
import os
import select
import socket
import ssl
import tempfile
import threading
import time
from typing import Callable

from cryptography import x509

from ca import SVID, spiffe_id_from_cert, trust_domain_of

MAX_FDS = 64


# ---------------------------------------------------------------------------------------------
# fds and URLs

def inode_url_of_fd(fd: int) -> str:
    st = os.fstat(fd)
    return f"inode://{st.st_dev}/{st.st_ino}"


def inode_url_of_path(path: str) -> str:
    st = os.stat(path)
    return f"inode://{st.st_dev}/{st.st_ino}"


def parse_inode_url(url: str) -> tuple[int, int]:
    if not url.startswith("inode://"):
        raise ValueError(f"not an inode URL: {url!r}")
    host, _, path = url[len("inode://"):].partition("/")
    return int(host), int(path.strip("/"))


def open_for_sending(path: str) -> int:
    """Opens a file to pass: O_PATH for a socket file (as NSM's registry sendfd does for
    listen sockets), O_RDONLY otherwise (netns files)."""
    import stat as _stat
    st = os.stat(path)
    flags = os.O_CLOEXEC | (os.O_PATH if _stat.S_ISSOCK(st.st_mode) else os.O_RDONLY)
    return os.open(path, flags)


class FDMap:
    """fds received on one connection, keyed by (dev, ino)."""

    def __init__(self):
        self._fds: dict[tuple[int, int], int] = {}
        self._cond = threading.Condition()

    def put(self, fd: int) -> None:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        with self._cond:
            if key in self._fds:
                os.close(fd)
                return
            self._fds[key] = fd
            self._cond.notify_all()

    def take(self, url: str, timeout: float = 5.0) -> int:
        """A dup of the fd for inode://dev/ino; TimeoutError if it has not arrived in time."""
        key = parse_inode_url(url)
        deadline = time.monotonic() + timeout
        with self._cond:
            while key not in self._fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no fd for {url} within {timeout}s")
                self._cond.wait(left)
            return os.dup(self._fds[key])

    def urls(self) -> list[str]:
        with self._cond:
            return [f"inode://{d}/{i}" for d, i in self._fds]

    def close(self) -> None:
        with self._cond:
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds.clear()


class FDQueue:
    """fds waiting to ride on the next bytes written."""

    def __init__(self):
        self._fds: list[int] = []
        self._lock = threading.Lock()

    def push(self, fd: int) -> None:
        """Queues a dup of fd (the caller keeps its own)."""
        with self._lock:
            self._fds.append(os.dup(fd))

    def pop(self, n: int) -> list[int]:
        with self._lock:
            out, self._fds = self._fds[:n], self._fds[n:]
            return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._fds)


# ---------------------------------------------------------------------------------------------
# identities and TLS

class Identity:
    """This peer's current X.509-SVID (replaceable at any time) and its trust bundle, as TLS contexts."""

    def __init__(self, svid: SVID, workdir: str | None = None, extra_bundle_pem: bytes = b"",
                 accept_trust_domains: tuple = ()):
        """extra_bundle_pem / accept_trust_domains: also trust these CAs / peers of these
        trust domains (for a 'foreign' identity that must still get as far as the server's check)."""
        self._lock = threading.Lock()
        self.extra_bundle_pem = extra_bundle_pem
        self.accept_trust_domains = tuple(trust_domain_of(t) for t in accept_trust_domains)
        # a folder of its own: several identities may share one workdir
        self.workdir = tempfile.mkdtemp(prefix="svid-", dir=workdir)
        self._n = 0
        self.set(svid)

    def set(self, svid: SVID, bundle_pem: bytes | None = None) -> None:
        with self._lock:
            self._n += 1
            crt, key = svid.write(os.path.join(self.workdir, f"svid{self._n}"))
            self.svid, self._crt, self._key = svid, crt, key
            self.bundle_pem = (bundle_pem or svid.bundle_pem) + self.extra_bundle_pem
            self.trust_domain = trust_domain_of(svid.spiffe_id)

    @property
    def spiffe_id(self) -> str:
        return self.svid.spiffe_id

    def context(self, server_side: bool) -> ssl.SSLContext:
        with self._lock:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if not server_side:
                ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_cert_chain(self._crt, self._key)
            ctx.load_verify_locations(cadata=self.bundle_pem.decode())
            ctx.set_alpn_protocols(["h2"])
            return ctx

    def authorize(self, peer: x509.Certificate) -> str:
        """AuthorizeAny within our trust domain: one spiffe:// URI SAN of our trust domain,
        not a CA (the chain itself was verified by the handshake). Returns the peer's ID."""
        pid = spiffe_id_from_cert(peer)
        if pid is None:
            raise ssl.SSLError("peer certificate has no single spiffe:// URI SAN")
        if trust_domain_of(pid) != self.trust_domain and trust_domain_of(pid) not in self.accept_trust_domains:
            raise ssl.SSLError(f"peer {pid} is not of trust domain {self.trust_domain}")
        try:
            if peer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise ssl.SSLError("peer certificate is a CA")
        except x509.ExtensionNotFound:
            pass
        return pid


# ---------------------------------------------------------------------------------------------
# one real connection

class Conn:
    """One real unix-socket connection and its inner plaintext TCP connection to/from grpcio."""

    def __init__(self, raw: socket.socket, identity: Identity | None, server_side: bool,
                 send_q: FDQueue | None = None, recv_map: FDMap | None = None, log: Callable | None = None):
        self.raw = raw
        self.identity = identity
        self.server_side = server_side
        self.send_q = send_q or FDQueue()
        self.recv_map = recv_map or FDMap()
        self.inner: socket.socket | None = None
        self.peer_cert: x509.Certificate | None = None
        self.peer_id: str | None = None
        self.tls_version: str | None = None
        self.alpn: str | None = None
        self.error: str | None = None
        self.closed = threading.Event()
        self.log = log or (lambda *_: None)
        self._ssl = None
        self._in = self._out = None

    # raw socket I/O with fds --------------------------------------------------------------
    def _recv_raw(self) -> bytes:
        data, anc, _flags, _ = self.raw.recvmsg(65536, socket.CMSG_SPACE(4 * MAX_FDS), socket.MSG_CMSG_CLOEXEC)
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
                for fd in fds:
                    try:
                        self.recv_map.put(fd)
                    except OSError:
                        os.close(fd)
        return data

    def _send_raw(self, data: bytes) -> None:
        if not data:
            return
        fds = self.send_q.pop(min(MAX_FDS, len(data)))
        for i, fd in enumerate(fds):
            try:
                self.raw.sendmsg([data[i:i + 1]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            finally:
                os.close(fd)
        self.raw.sendall(data[len(fds):])

    # TLS ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._out is not None:
            ct = self._out.read()
            if ct:
                self._send_raw(ct)

    def handshake(self, timeout: float = 10.0) -> None:
        if self.identity is None:
            return
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._ssl = self.identity.context(self.server_side).wrap_bio(self._in, self._out, server_side=self.server_side)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ssl.do_handshake()
                self._flush()
                break
            except ssl.SSLWantReadError:
                self._flush()
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.raw], [], [], left)[0]:
                    raise TimeoutError("TLS handshake timed out")
                data = self._recv_raw()
                if not data:
                    raise ConnectionError("peer closed during TLS handshake")
                self._in.write(data)
        der = self._ssl.getpeercert(binary_form=True)
        if not der:
            raise ssl.SSLError("peer sent no certificate")
        self.peer_cert = x509.load_der_x509_certificate(der)
        self.peer_id = self.identity.authorize(self.peer_cert)
        self.tls_version = self._ssl.version()
        self.alpn = self._ssl.selected_alpn_protocol()

    # pumping -----------------------------------------------------------------------------
    def pump(self) -> None:
        """Copies bytes both ways until either side closes."""
        try:
            while True:
                r, _, _ = select.select([self.raw, self.inner], [], [], 0.5)
                if self.raw in r:
                    data = self._recv_raw()
                    if not data:
                        break
                    if self._ssl is None:
                        self.inner.sendall(data)
                    else:
                        self._in.write(data)
                        eof = False
                        while True:
                            try:
                                pt = self._ssl.read(65536)
                            except ssl.SSLWantReadError:
                                break
                            except ssl.SSLZeroReturnError:
                                eof = True
                                break
                            if not pt:
                                eof = True
                                break
                            self.inner.sendall(pt)
                        self._flush()
                        if eof:
                            break
                if self.inner in r:
                    pt = self.inner.recv(65536)
                    if not pt:
                        break
                    if self._ssl is None:
                        self._send_raw(pt)
                    else:
                        self._ssl.write(pt)
                        self._flush()
        except (OSError, ssl.SSLError, ValueError) as e:
            if not self.closed.is_set():  # not our own close()
                self.error = f"{type(e).__name__}: {e}"
                self.log(f"grpcfd conn ended: {self.error}")
        finally:
            self.close()

    def send_fd(self, fd: int) -> str:
        """Queues (a dup of) fd for the next bytes written; returns its inode URL."""
        self.send_q.push(fd)
        return inode_url_of_fd(fd)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.inner, self.raw):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# ---------------------------------------------------------------------------------------------
# server side

class ServerProxy:
    """Listens on a real unix socket; each accepted connection is TLS-terminated (unless
    identity is None: plaintext) and pumped to a grpcio server on 127.0.0.1:<inner_port>."""

    def __init__(self, path: str, inner_port: int, identity: Identity | None, log: Callable | None = None):
        self.path = path
        self.inner_port = inner_port
        self.identity = identity
        self.log = log or (lambda *_: None)
        self.conns: dict[int, Conn] = {}  # inner local port -> Conn
        self.rejected: list[str] = []    # why handshakes failed
        self._lock = threading.Lock()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.listen(64)
        self._stop = False
        threading.Thread(target=self._accept_loop, daemon=True, name=f"accept {path}").start()

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        c = Conn(raw, self.identity, server_side=True, log=self.log)
        try:
            c.handshake()
        except Exception as e:  # noqa: BLE001
            msg = f"{type(e).__name__}: {e}"
            with self._lock:
                self.rejected.append(msg)
            self.log(f"{self.path}: refused a connection: {msg}")
            c.close()
            return
        inner = socket.create_connection(("127.0.0.1", self.inner_port))
        inner.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.inner = inner
        port = inner.getsockname()[1]
        with self._lock:
            self.conns[port] = c
        try:
            c.pump()
        finally:
            # keep it a moment for handlers still finishing
            def drop():
                time.sleep(2)
                with self._lock:
                    if self.conns.get(port) is c:
                        del self.conns[port]
            threading.Thread(target=drop, daemon=True).start()

    def conn_for(self, context) -> Conn | None:
        """The real connection a grpcio call came in on (context.peer() is 'ipv4:127.0.0.1:<port>')."""
        peer = context.peer()
        try:
            port = int(peer.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return None
        with self._lock:
            return self.conns.get(port)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        with self._lock:
            conns = list(self.conns.values())
        for c in conns:
            c.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------------------------------------
# client side

class ClientDialer:
    """A local TCP endpoint for a grpcio channel; each connection grpcio makes to it is carried
    to the real unix socket `target` (a path, e.g. also /proc/self/fd/N) over TLS (or plaintext
    when identity is None). fds queued here ride on the first real connection's next bytes;
    fds received on any of its connections land in one map."""

    def __init__(self, target: str, identity: Identity | None, log: Callable | None = None):
        self.target = target
        self.identity = identity
        self.log = log or (lambda *_: None)
        self.send_q = FDQueue()
        self.recv_map = FDMap()
        self.conns: list[Conn] = []
        self.errors: list[str] = []
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept_loop, daemon=True, name=f"dial {target}").start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self._stop:
            try:
                inner, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(inner,), daemon=True).start()

    def _carry(self, inner: socket.socket) -> None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        c = Conn(raw, self.identity, server_side=False, send_q=self.send_q, recv_map=self.recv_map, log=self.log)
        try:
            raw.connect(self.target)
            c.handshake()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{type(e).__name__}: {e}")
            self.log(f"dial {self.target}: {self.errors[-1]}")
            inner.close()
            c.close()
            self.failed.set()
            return
        c.inner = inner
        self.conns.append(c)
        self.connected.set()
        c.pump()

    @property
    def conn(self) -> Conn | None:
        live = [c for c in self.conns if not c.closed.is_set()]
        return live[-1] if live else (self.conns[-1] if self.conns else None)

    def wait(self, timeout: float = 10.0) -> Conn:
        """Waits for a live real connection (after TLS); raises ConnectionError on failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.conn
            if c is not None and not c.closed.is_set():
                return c
            if self.failed.is_set():
                raise ConnectionError(f"dial {self.target}: {'; '.join(self.errors)}")
            time.sleep(0.02)
        raise TimeoutError(f"dial {self.target}: no connection within {timeout}s")

    def send_fd(self, fd: int) -> str:
        self.send_q.push(fd)
        return inode_url_of_fd(fd)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()
        self.recv_map.close()


def wait_ready(ch, dialer: ClientDialer, timeout: float = 10.0) -> Conn:
    """Waits until grpcio's channel is READY over a live real connection; fails fast (ConnectionError)
    when the real connection could not be made or the peer ended it (e.g. refused our
    certificate after a TLS 1.3 handshake), instead of waiting for grpcio's reconnects."""
    import grpc
    fut = grpc.channel_ready_future(ch)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fut.done():
            return dialer.wait(max(0.1, deadline - time.monotonic()))
        if dialer.failed.is_set():
            raise ConnectionError(f"dial {dialer.target}: {'; '.join(dialer.errors)}")
        conns = list(dialer.conns)
        if conns and all(c.closed.is_set() for c in conns):
            why = conns[-1].error or "the peer closed the connection"
            raise ConnectionError(f"dial {dialer.target}: connection ended before the channel was ready: {why}")
        time.sleep(0.02)
    fut.cancel()
    raise ConnectionError(f"dial {dialer.target}: channel not ready within {timeout}s")


def channel(dialer: ClientDialer):
    """A grpcio channel through the dialer."""
    import grpc
    return grpc.insecure_channel(dialer.address, options=[
        ("grpc.default_authority", "localhost"),
        ("grpc.enable_http_proxy", 0),
        ("grpc.enable_retries", 0),
    ])
