"""NSM peers with SPIFFE mTLS, NSM path tokens and grpcfd fd passing:

  Registry  - NetworkServiceRegistry + NetworkServiceEndpointRegistry (the NSMgr's registry API)
  Endpoint  - an NSE (NetworkService, MonitorConnection, Health) answering with a KERNEL
              mechanism in its pod netns (inodeURL + the netns fd) and an IP context
  NSMgr     - the client side of the NSMgr towards a forwarder (or any NetworkService server):
              builds [nsc, nsmgr] paths with tokens, sends the client pod's netns fd

Each server listens on a real unix socket through grpcfd.ServerProxy (TLS, fds) and serves
grpcio on 127.0.0.1:<ephemeral>.
"""
from __future__ import annotations

import datetime as _dt
import os
import sys
import threading
import time
import uuid
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "gen"))

import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from google.protobuf import empty_pb2, json_format, timestamp_pb2  # noqa: E402

import grpcfd  # noqa: E402
import tokens  # noqa: E402
from ca import SVID  # noqa: E402
import health_pb2  # noqa: E402
import health_pb2_grpc  # noqa: E402
from networkservice import connection_pb2, connection_pb2_grpc, networkservice_pb2, networkservice_pb2_grpc  # noqa: E402
from registry import registry_pb2, registry_pb2_grpc  # noqa: E402


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def to_dict(msg) -> dict:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def ts(t: _dt.datetime) -> timestamp_pb2.Timestamp:
    x = timestamp_pb2.Timestamp()
    x.FromDatetime(t.astimezone(_dt.timezone.utc).replace(tzinfo=None))
    return x


def segs_of(conn) -> list[dict]:
    return [{"name": s.name, "id": s.id, "token": s.token} for s in conn.path.path_segments]


class Served:
    """A grpcio server on 127.0.0.1 behind a grpcfd.ServerProxy on a unix socket."""

    def __init__(self, path: str, identity: grpcfd.Identity | None, add_services):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        add_services(self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.proxy = grpcfd.ServerProxy(path, port, identity, log=log)
        self.path = path

    def stop(self) -> None:
        self.proxy.close()
        self.server.stop(0.5)


def _peer(proxy: grpcfd.ServerProxy, context) -> grpcfd.Conn:
    c = proxy.conn_for(context)
    if c is None:
        context.abort(grpc.StatusCode.INTERNAL, "no connection state for this call")
    return c


def server_tokens(context, conn: grpcfd.Conn, identity: grpcfd.Identity, c, policies: bool = True,
                  max_lifetime: float = tokens.DEFAULT_MAX_TOKEN_LIFETIME) -> str | None:
    """updatetoken + authorize of NSM's endpoint chain on connection c (path already updated):
    the metadata token goes into the previous segment, our own token into ours; then the
    default server policies on the left side. Returns the failing policies (NSM order)."""
    path = c.path
    i = path.index
    md = tokens.from_metadata(context.invocation_metadata())
    if i >= 1 and md is not None:
        path.path_segments[i - 1].token = md[0]
        path.path_segments[i - 1].expires.CopyFrom(ts(md[1]))
    tok, exp = tokens.generate(identity.svid, conn.peer_cert, max_lifetime)
    path.path_segments[i].token = tok
    path.path_segments[i].expires.CopyFrom(ts(exp))
    if not policies:
        return []
    return tokens.failing_server_policies(segs_of(c), i, conn.peer_cert)


def update_path(c, name: str) -> int:
    """sdk updatepath/common.go; returns the caller's index. Raises ValueError."""
    path = c.path
    if len(path.path_segments) == 0:
        path.index = 0
        if not c.id:
            c.id = str(uuid.uuid4())
        path.path_segments.add(name=name, id=c.id)
        return 0
    if path.index < len(path.path_segments) and path.path_segments[path.index].name == name:
        c.id = path.path_segments[path.index].id
        return path.index
    nxt = path.index + 1
    if nxt > len(path.path_segments):
        raise ValueError(f"Path.Index+1=={nxt} should be less or equal len(Path.PathSegments)=={len(path.path_segments)}")
    if path.path_segments[path.index].id != c.id:
        raise ValueError(f"Current PathSegment.Id=={path.path_segments[path.index].id} should be equal Connection.Id=={c.id}")
    if nxt < len(path.path_segments) and path.path_segments[nxt].name != name:
        path.path_segments[nxt].name = name
        path.path_segments[nxt].id = str(uuid.uuid4())
    path.index += 1
    if path.index >= len(path.path_segments):
        c.id = str(uuid.uuid4())
        path.path_segments.add(name=name, id=c.id)
    else:
        c.id = path.path_segments[path.index].id
    return path.index - 1


def _take_fd(recv_map: grpcfd.FDMap, url: str, timeout: float = 2.0) -> dict:
    """Takes the fd for an inode URL; reports whether its fstat matches the URL."""
    try:
        fd = recv_map.take(url, timeout)
    except TimeoutError:
        return {"received": False}
    try:
        st = os.fstat(fd)
        return {"received": True, "matches": grpcfd.parse_inode_url(url) == (st.st_dev, st.st_ino)}
    finally:
        os.close(fd)


def deny(context, policy: str) -> None:
    context.abort(grpc.StatusCode.PERMISSION_DENIED,
                  f"networkservice: an error occurred during authorization policy check: "
                  f"policy {policy} failed: no sufficient privileges")


# =============================================================================================
# Registry

class Registry(registry_pb2_grpc.NetworkServiceRegistryServicer):
    """In-memory NS + NSE registry. NSEs may be held with a local file (their socket) whose fd
    is sent with Find answers (url rewritten to inode://dev/ino, as sendfd's Find server does);
    an NSE registered with an inode:// URL gets its fd taken from the connection (recvfd)."""

    def __init__(self, identity: grpcfd.Identity, path: str, expiry: float = 60, require_token: bool = False):
        self.identity = identity
        self.expiry = expiry
        self.require_token = require_token
        self.lock = threading.Lock()
        self.services: dict[str, registry_pb2.NetworkService] = {}
        self.endpoints: dict[str, registry_pb2.NetworkServiceEndpoint] = {}
        self.local_files: dict[str, str] = {}   # NSE name -> path to open and send on Find
        self.received_fds: dict[str, int] = {}  # NSE name -> fd received at Register
        self.registrations: list[dict] = []
        self.finds: list[dict] = []
        self.nse = _NSERegistry(self)
        self.served = Served(path, identity, self._add)

    def _add(self, server) -> None:
        registry_pb2_grpc.add_NetworkServiceRegistryServicer_to_server(self, server)
        registry_pb2_grpc.add_NetworkServiceEndpointRegistryServicer_to_server(self.nse, server)

    @property
    def proxy(self) -> grpcfd.ServerProxy:
        return self.served.proxy

    def add_service(self, name: str, payload: str = "ETHERNET") -> None:
        with self.lock:
            self.services[name] = registry_pb2.NetworkService(name=name, payload=payload)

    def add_local_endpoint(self, name: str, services: list[str], socket_path: str, url_mode: str = "inode") -> None:
        """An NSE reachable through socket_path; url_mode 'inode' (fd sent on Find) or 'unix'."""
        nse = registry_pb2.NetworkServiceEndpoint(name=name, network_service_names=services)
        nse.url = grpcfd.inode_url_of_path(socket_path) if url_mode == "inode" else "unix://" + socket_path
        nse.expiration_time.CopyFrom(ts(_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1)))
        with self.lock:
            self.endpoints[name] = nse
            if url_mode == "inode":
                self.local_files[name] = socket_path

    def dial_path(self, name: str) -> str | None:
        """A path to reach a registered NSE from this process."""
        with self.lock:
            nse = self.endpoints.get(name)
            if nse is None:
                return None
            if name in self.received_fds:
                return f"/proc/self/fd/{self.received_fds[name]}"
            if name in self.local_files:
                return self.local_files[name]
            if nse.url.startswith("unix://"):
                return nse.url[len("unix://"):]
            return None

    # NetworkServiceRegistry
    def Register(self, request, context):
        _peer(self.proxy, context)
        with self.lock:
            self.services[request.name] = request
        return request

    def Find(self, request, context):
        _peer(self.proxy, context)
        q = request.network_service
        with self.lock:
            found = [s for s in self.services.values() if not q.name or s.name == q.name]
        for s in found:
            yield registry_pb2.NetworkServiceResponse(network_service=s)
        if request.watch:
            while context.is_active():
                time.sleep(0.2)

    def Unregister(self, request, context):
        _peer(self.proxy, context)
        with self.lock:
            self.services.pop(request.name, None)
        return empty_pb2.Empty()


class _NSERegistry(registry_pb2_grpc.NetworkServiceEndpointRegistryServicer):
    def __init__(self, owner: Registry):
        self.o = owner

    def _check_token(self, context, conn: grpcfd.Conn) -> dict:
        md = list(context.invocation_metadata())
        got = tokens.from_metadata(md)
        info = {"peer_id": conn.peer_id, "token": None, "path": dict(md).get("path")}
        if got is not None:
            p = tokens.decode(got[0]) or {}
            info["token"] = {"sub": p.get("sub"), "aud": p.get("aud"), "exp": p.get("exp"),
                             "signed_by_peer": tokens.verify_es256(got[0], conn.peer_cert)}
        if self.o.require_token:
            t = info["token"]
            if not t or not t["signed_by_peer"] or t["sub"] != conn.peer_id or not tokens.tokens_expired(
                    [{"token": got[0]}]):
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              "registry: an error occurred during authorization policy check: no sufficient privileges")
        if info["path"] is not None:
            context.send_initial_metadata([("path", info["path"])])
        return info

    def Register(self, request, context):
        conn = _peer(self.o.proxy, context)
        info = self._check_token(context, conn)
        nse = registry_pb2.NetworkServiceEndpoint()
        nse.CopyFrom(request)
        fd_note = None
        if nse.url.startswith("inode://"):
            try:
                fd = conn.recv_map.take(nse.url, timeout=3)
                with self.o.lock:
                    old = self.o.received_fds.pop(nse.name, None)
                    self.o.received_fds[nse.name] = fd
                if old is not None:
                    os.close(old)
                fd_note = f"/proc/{os.getpid()}/fd/{fd}"
            except TimeoutError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no fd received for {nse.url}")
        now = _dt.datetime.now(_dt.timezone.utc)
        exp = now + _dt.timedelta(seconds=self.o.expiry)
        if nse.HasField("expiration_time"):
            exp = min(exp, nse.expiration_time.ToDatetime(tzinfo=_dt.timezone.utc))
        nse.expiration_time.CopyFrom(ts(exp))
        with self.o.lock:
            self.o.endpoints[nse.name] = nse
            self.o.local_files.pop(nse.name, None)
            self.o.registrations.append({"nse": to_dict(nse), "received_fd": fd_note, "tls_version": conn.tls_version,
                                         "at": now.isoformat(), **info})
        return nse

    def Find(self, request, context):
        conn = _peer(self.o.proxy, context)
        q = request.network_service_endpoint
        with self.o.lock:
            found = []
            for e in self.o.endpoints.values():
                if q.name and e.name != q.name:
                    continue
                if q.network_service_names and not all(n in e.network_service_names for n in q.network_service_names):
                    continue
                found.append((e, self.o.local_files.get(e.name), self.o.received_fds.get(e.name)))
            self.o.finds.append({"peer_id": conn.peer_id, "query": to_dict(request), "found": [e.name for e, _, _ in found]})
        for e, local, rfd in found:
            out = registry_pb2.NetworkServiceEndpoint()
            out.CopyFrom(e)
            fd = None
            try:
                if local is not None:
                    fd = grpcfd.open_for_sending(local)
                elif rfd is not None:
                    fd = os.dup(rfd)
                if fd is not None:
                    out.url = conn.send_fd(fd)
            finally:
                if fd is not None:
                    os.close(fd)
            yield registry_pb2.NetworkServiceEndpointResponse(network_service_endpoint=out)
        if request.watch:
            while context.is_active():
                time.sleep(0.2)

    def Unregister(self, request, context):
        conn = _peer(self.o.proxy, context)
        self._check_token(context, conn)
        with self.o.lock:
            self.o.endpoints.pop(request.name, None)
            fd = self.o.received_fds.pop(request.name, None)
        if fd is not None:
            os.close(fd)
        return empty_pb2.Empty()


# =============================================================================================
# Endpoint

class Endpoint(networkservice_pb2_grpc.NetworkServiceServicer, connection_pb2_grpc.MonitorConnectionServicer,
               health_pb2_grpc.HealthServicer):
    """A test NSE. Its answer: the KERNEL (or requested) mechanism with inodeURL = inode://dev/ino
    of its pod netns (the fd sent with the answer) and an IP context (src = the client's
    address, dst = the endpoint's), if the request has none; the path trimmed after its own
    segment; index/id of the caller (updatepath)."""

    def __init__(self, name: str, identity: grpcfd.Identity, path: str, netns: str | None,
                 src_ip: str = "172.16.1.101/32", dst_ip: str = "172.16.1.100/32"):
        self.name = name
        self.identity = identity
        self.netns = netns
        self.src_ip, self.dst_ip = src_ip, dst_ip
        self.refuse = False
        self.policies = True
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.closes: list[dict] = []
        self.connections: dict[str, connection_pb2.Connection] = {}
        self.served = Served(path, identity, self._add)

    def _add(self, server) -> None:
        networkservice_pb2_grpc.add_NetworkServiceServicer_to_server(self, server)
        connection_pb2_grpc.add_MonitorConnectionServicer_to_server(self, server)
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    @property
    def proxy(self) -> grpcfd.ServerProxy:
        return self.served.proxy

    def _enter(self, context, c, record: list) -> int:
        conn = _peer(self.proxy, context)
        try:
            prev = update_path(c, self.name)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        failed = server_tokens(context, conn, self.identity, c, self.policies)
        with self.lock:
            record.append({"connection": to_dict(c), "peer_id": conn.peer_id, "policies_failed": failed,
                           "metadata_token": tokens.from_metadata(context.invocation_metadata()) is not None})
        if failed:
            deny(context, failed[0])
        return prev

    def Request(self, request, context):
        c = request.connection
        prev = self._enter(context, c, self.requests)
        conn = _peer(self.proxy, context)
        received = {}
        for m in request.mechanism_preferences:
            u = m.parameters.get("inodeURL", "")
            if u.startswith("inode://"):
                received[u] = _take_fd(conn.recv_map, u)
        with self.lock:
            self.requests[-1]["mechanism_preferences"] = [to_dict(m) for m in request.mechanism_preferences]
            self.requests[-1]["received_fds"] = received
        if self.refuse:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "test endpoint refuses")
        if not c.context.ip_context.src_ip_addrs:
            c.context.ip_context.src_ip_addrs[:] = [self.src_ip]
            c.context.ip_context.dst_ip_addrs[:] = [self.dst_ip]
        mech = connection_pb2.Mechanism()
        if c.HasField("mechanism") and c.mechanism.type:
            mech.CopyFrom(c.mechanism)
        else:
            pref = [m for m in request.mechanism_preferences if m.type == "KERNEL"] or list(request.mechanism_preferences)
            if not pref:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no mechanism preference")
            mech.CopyFrom(pref[0])
        if self.netns:
            fd = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                mech.parameters["inodeURL"] = conn.send_fd(fd)
            finally:
                os.close(fd)
        c.mechanism.CopyFrom(mech)
        # trimpath, then updatepath's answer: the caller's index and id
        own = c.path.index
        del c.path.path_segments[own + 1:]
        with self.lock:
            self.connections[c.id] = type(c)()
            self.connections[c.id].CopyFrom(c)
        c.path.index = prev
        c.id = c.path.path_segments[prev].id
        return c

    def Close(self, request, context):
        c = request
        self._enter(context, c, self.closes)
        with self.lock:
            self.connections.pop(c.id, None)
        return empty_pb2.Empty()

    def MonitorConnections(self, request, context):
        with self.lock:
            conns = {k: v for k, v in self.connections.items()}
        yield connection_pb2.ConnectionEvent(type=connection_pb2.INITIAL_STATE_TRANSFER, connections=conns)
        while context.is_active():
            time.sleep(0.2)

    def Check(self, request, context):
        if request.service in ("", "networkservice.NetworkService", "connection.MonitorConnection"):
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")


# =============================================================================================
# NSMgr (client side)

TOKEN_MODES = ("ok", "forged", "expired", "broken-chain", "none", "aud-string")
TLS_MODES = ("ok", "other-td", "plaintext", "expired-svid")


class NSMgr:
    """Sends Request/Close to a NetworkService server as the NSMgr does for a client pod:
    path [nsc (token signed by the NSC identity, aud = NSMgr), nsmgr (own token, aud = the
    server's SPIFFE ID from its TLS certificate)], index 1, connection id = the NSMgr's
    segment id; nsm-client-token metadata = the NSMgr's token."""

    def __init__(self, identity: grpcfd.Identity, nsc: SVID, name: str = "nsmgr",
                 other_td: grpcfd.Identity | None = None, expired: grpcfd.Identity | None = None,
                 max_lifetime: float = tokens.DEFAULT_MAX_TOKEN_LIFETIME):
        self.identity = identity
        self.nsc = nsc
        self.name = name
        self.other_td = other_td
        self.expired = expired
        self.max_lifetime = max_lifetime
        self.connections: dict[str, connection_pb2.Connection] = {}  # nsmgr segment id -> last answer
        self.preferences: dict[str, list] = {}
        self.last_received: dict[str, dict] = {}
        self.netns_of: dict[str, str] = {}
        self.lock = threading.Lock()

    def _identity(self, tls: str) -> grpcfd.Identity | None:
        if tls == "ok":
            return self.identity
        if tls == "plaintext":
            return None
        if tls == "other-td":
            if self.other_td is None:
                raise ValueError("no other-trust-domain identity configured")
            return self.other_td
        if tls == "expired-svid":
            if self.expired is None:
                raise ValueError("no expired identity configured")
            return self.expired
        raise ValueError(f"tls mode {tls!r}: one of {TLS_MODES}")

    def _tokens(self, c, peer_cert, mode: str):
        """Fills the nsc and nsmgr segments' tokens; returns the metadata to send."""
        now = _dt.datetime.now(_dt.timezone.utc)
        ident = self.identity.svid
        nsc_seg, mgr_seg = c.path.path_segments[0], c.path.path_segments[1]
        nsc_exp = min(now + _dt.timedelta(seconds=self.max_lifetime), self.nsc.not_after)
        nsc_aud = [ident.spiffe_id] if mode != "broken-chain" else [ident.spiffe_id + "-not-me"]
        nsc_seg.token = tokens.sign(self.nsc.key, {"sub": self.nsc.spiffe_id, "aud": nsc_aud, "exp": int(nsc_exp.timestamp())})
        nsc_seg.expires.CopyFrom(ts(nsc_exp))
        if mode == "none":
            mgr_seg.token = ""
            mgr_seg.ClearField("expires")
            return []
        tok, exp = tokens.generate(ident, peer_cert, self.max_lifetime)
        if mode == "forged":
            # right claims, signed by a key that is not the TLS peer's
            p = tokens.decode(tok)
            tok = tokens.sign(ec.generate_private_key(ec.SECP256R1()), p)
        elif mode == "expired":
            p = tokens.decode(tok)
            exp = now - _dt.timedelta(seconds=60)
            p["exp"] = int(exp.timestamp())
            tok = tokens.sign(ident.key, p)
        elif mode == "aud-string":
            p = tokens.decode(tok)
            p["aud"] = p["aud"][0]
            tok = tokens.sign(ident.key, p)
        elif mode not in ("ok", "broken-chain"):
            raise ValueError(f"token mode {mode!r}: one of {TOKEN_MODES}")
        mgr_seg.token = tok
        mgr_seg.expires.CopyFrom(ts(exp))
        return tokens.metadata(tok, exp)

    def _call(self, target: str, method: str, msg, tls: str, token: str, fds: list[int], timeout: float):
        dialer = grpcfd.ClientDialer(target, self._identity(tls), log=log)
        ch = grpcfd.channel(dialer)
        try:
            for fd in fds:
                dialer.send_fd(fd)
            conn = grpcfd.wait_ready(ch, dialer, timeout)
            c = msg.connection if method == "Request" else msg
            md = self._tokens(c, conn.peer_cert, token)
            stub = networkservice_pb2_grpc.NetworkServiceStub(ch)
            fn = stub.Request if method == "Request" else stub.Close
            answer = fn(msg, metadata=md, timeout=timeout)
            self.last_received = {}
            if method == "Request":
                sent = {grpcfd.inode_url_of_fd(fd) for fd in fds}
                for k, u in answer.mechanism.parameters.items():
                    # a forwarder answers with our own URL swapped back (no fd); an NSE sends its own
                    if u.startswith("inode://") and u not in sent:
                        self.last_received[u] = _take_fd(dialer.recv_map, u)
            return answer, conn
        except grpc.FutureTimeoutError:
            raise ConnectionError(f"dial {target}: channel not ready: {'; '.join(dialer.errors) or 'timeout'}")
        finally:
            ch.close()
            dialer.close()

    def request(self, target: str, service: str, pod_netns: str | None = None, ifname: str | None = "nsm-1",
                mechanism: str = "KERNEL", token: str = "ok", tls: str = "ok", labels: dict | None = None,
                payload: str = "", extra_params: dict | None = None, endpoint_name: str = "",
                refresh_of: str | None = None, timeout: float = 20):
        """Returns (answer Connection, our segment id). Raises grpc.RpcError / ConnectionError."""
        fds = []
        params = dict(extra_params or {})
        try:
            if pod_netns:
                fd = os.open(pod_netns, os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                params["inodeURL"] = grpcfd.inode_url_of_fd(fd)
            if mechanism == "KERNEL" and ifname:
                params["name"] = ifname
            pref = connection_pb2.Mechanism(cls="LOCAL", type=mechanism, parameters=params)
            req = networkservice_pb2.NetworkServiceRequest()
            if refresh_of is not None:
                with self.lock:
                    req.connection.CopyFrom(self.connections[refresh_of])
                    prefs = self.preferences[refresh_of]
                pod_netns = pod_netns or self.netns_of.get(refresh_of)
                if pod_netns and not fds:
                    fd = os.open(pod_netns, os.O_RDONLY | os.O_CLOEXEC)
                    fds.append(fd)
                for m in prefs:
                    m2 = req.mechanism_preferences.add()
                    m2.CopyFrom(m)
                    if fds and "inodeURL" in m2.parameters:
                        m2.parameters["inodeURL"] = grpcfd.inode_url_of_fd(fds[0])
                # as NSM's sendfd client: the netns fd is sent again on every refresh
                if fds and "inodeURL" in req.connection.mechanism.parameters:
                    req.connection.mechanism.parameters["inodeURL"] = grpcfd.inode_url_of_fd(fds[0])
            else:
                c = req.connection
                c.network_service = service
                c.labels.update(labels or {"podName": "nsc"})
                if payload:
                    c.payload = payload
                if endpoint_name:
                    c.network_service_endpoint_name = endpoint_name
                c.path.path_segments.add(name="nsc", id=str(uuid.uuid4()))
                mgr_id = str(uuid.uuid4())
                c.path.path_segments.add(name=self.name, id=mgr_id)
                c.path.index = 1
                c.id = mgr_id
                req.mechanism_preferences.append(pref)
            req.connection.path.index = 1
            req.connection.id = req.connection.path.path_segments[1].id
            answer, _ = self._call(target, "Request", req, tls, token, fds, timeout)
            sid = req.connection.path.path_segments[1].id
            with self.lock:
                self.connections[sid] = answer
                self.preferences[sid] = list(req.mechanism_preferences)
                if pod_netns:
                    self.netns_of[sid] = pod_netns
            return answer, sid
        finally:
            for fd in fds:
                os.close(fd)

    def close(self, target: str, conn_id: str, token: str = "ok", tls: str = "ok", timeout: float = 20):
        with self.lock:
            c = connection_pb2.Connection()
            c.CopyFrom(self.connections[conn_id])
        c.path.index = 1
        c.id = c.path.path_segments[1].id
        self._call(target, "Close", c, tls, token, [], timeout)
        with self.lock:
            self.connections.pop(conn_id, None)
            self.preferences.pop(conn_id, None)


# =============================================================================================
# registry client calls (what a forwarder does; used by the self-test as a stand-in for Weft)

def _client_md(dialer: grpcfd.ClientDialer, ch, identity: grpcfd.Identity, timeout: float):
    conn = grpcfd.wait_ready(ch, dialer, timeout)
    tok, exp = tokens.generate(identity.svid, conn.peer_cert)
    return tokens.metadata(tok, exp)


def registry_register(target: str, identity: grpcfd.Identity, nse: registry_pb2.NetworkServiceEndpoint,
                      listen_socket: str | None = None, timeout: float = 10):
    """Registers nse; with listen_socket, as NSM's registry sendfd client does: url =
    inode://dev/ino of the socket file, and its fd (O_PATH) sent on the connection."""
    dialer = grpcfd.ClientDialer(target, identity, log=log)
    ch = grpcfd.channel(dialer)
    try:
        if listen_socket:
            fd = grpcfd.open_for_sending(listen_socket)
            try:
                nse.url = dialer.send_fd(fd)
            finally:
                os.close(fd)
        md = _client_md(dialer, ch, identity, timeout)
        return registry_pb2_grpc.NetworkServiceEndpointRegistryStub(ch).Register(nse, metadata=md, timeout=timeout)
    finally:
        ch.close()
        dialer.close()


def registry_find(target: str, identity: grpcfd.Identity, query: registry_pb2.NetworkServiceEndpoint,
                  timeout: float = 10):
    """Find (watch=false). Returns ([NSE], {inode url: fd}) - the fds that came with the
    answer (dups; the caller closes them)."""
    dialer = grpcfd.ClientDialer(target, identity, log=log)
    ch = grpcfd.channel(dialer)
    try:
        md = _client_md(dialer, ch, identity, timeout)
        stub = registry_pb2_grpc.NetworkServiceEndpointRegistryStub(ch)
        out = [r.network_service_endpoint for r in stub.Find(
            registry_pb2.NetworkServiceEndpointQuery(network_service_endpoint=query), metadata=md, timeout=timeout)]
        fds = {}
        for e in out:
            if e.url.startswith("inode://"):
                fds[e.url] = dialer.recv_map.take(e.url, timeout=3)
        return out, fds
    finally:
        ch.close()
        dialer.close()


def monitor_first_event(nsmgr: NSMgr, target: str, conn_id: str | None, tls: str = "ok", timeout: float = 10):
    """MonitorConnections as the NSMgr subscribes on a forwarder: selector
    {path_segments:[{id: <its segment id>, name: <its name>}]} (empty selector when conn_id is
    None), per-RPC token metadata; returns the first ConnectionEvent."""
    dialer = grpcfd.ClientDialer(target, nsmgr._identity(tls), log=log)
    ch = grpcfd.channel(dialer)
    try:
        md = _client_md(dialer, ch, nsmgr.identity, timeout)
        sel = connection_pb2.MonitorScopeSelector()
        if conn_id:
            sel.path_segments.add(id=conn_id, name=nsmgr.name)
        call = connection_pb2_grpc.MonitorConnectionStub(ch).MonitorConnections(sel, metadata=md, timeout=timeout)
        try:
            return next(iter(call))
        finally:
            call.cancel()
    except grpc.FutureTimeoutError:
        raise ConnectionError(f"dial {target}: channel not ready: {'; '.join(dialer.errors) or 'timeout'}")
    finally:
        ch.close()
        dialer.close()
