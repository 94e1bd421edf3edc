#!/usr/bin/env python3
"""A test SPIFFE Workload API server (a stand-in for the SPIRE agent).

    python3 spire_agent.py --socket /tmp/x/agent.sock --trust-domain spiffe://test.weft \
        --id spiffe://test.weft/weft [--bundle /tmp/x/bundle.pem] [--ttl 3600]

Serves, on a unix socket, plaintext gRPC with the official Workload API
(proto/spiffe/workload.proto: service "SpiffeWorkloadAPI", no proto package):
  FetchX509SVID    stream X509SVIDResponse{svids:[{spiffe_id, x509_svid (DER leaf),
                   x509_svid_key (PKCS#8 DER), bundle (DER CA certs concatenated)}]};
                   the first answer at once, then one more on every change.
  FetchX509Bundles stream X509BundlesResponse{bundles:{"spiffe://<td>": DER CA certs}}
  FetchJWTSVID, FetchJWTBundles, ValidateJWTSVID: UNIMPLEMENTED.
Every call needs the metadata `workload.spiffe.io: true`; without it the call fails with
INVALID_ARGUMENT "security header missing from request" (as SPIRE's agent does).

Control (when run as a program): JSON lines on the unix socket <socket>.ctl, one answer line
per command, and SIGUSR1 = rotate:
  {"cmd":"rotate"}                        new key + cert, pushed on every open stream
  {"cmd":"expire"}                        push an SVID whose NotAfter is in the past
  {"cmd":"trust_domain","trust_domain":"spiffe://other.td"}
                                          new CA for that trust domain; new SVID from it
  {"cmd":"set_id","spiffe_id":"spiffe://test.weft/x"}   hand out that ID from now on
  {"cmd":"deny"}                          no identity: calls fail PERMISSION_DENIED
  {"cmd":"status"}                        {"spiffe_id","serial","not_after","trust_domain","streams"}
The CA bundle (PEM) of the current CA is (re)written to --bundle.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "gen"))

import grpc  # noqa: E402

from ca import CA, SVID, trust_domain_of  # noqa: E402
from spiffe import workload_pb2, workload_pb2_grpc  # noqa: E402

HEADER = "workload.spiffe.io"


class WorkloadAPI(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    """The Workload API over one identity; change it with the methods below."""

    def __init__(self, ca: CA, spiffe_id: str, ttl: float = 3600, bundle_path: str | None = None):
        self.ca = ca
        self.ttl = ttl
        self.bundle_path = bundle_path
        self.spiffe_id = ca.id(spiffe_id)
        self.cond = threading.Condition()
        self.version = 0
        self.streams = 0
        self.stopping = False
        self.svid: SVID | None = ca.mint(self.spiffe_id, ttl)
        self._write_bundle()

    # --- control -------------------------------------------------------------------------
    def _set(self, svid: SVID | None) -> None:
        with self.cond:
            self.svid = svid
            self.version += 1
            self.cond.notify_all()

    def _write_bundle(self) -> None:
        if self.bundle_path:
            self.ca.write_bundle(self.bundle_path)

    def rotate(self) -> SVID:
        s = self.ca.mint(self.spiffe_id, self.ttl)
        self._set(s)
        return s

    def issue_expired(self) -> SVID:
        s = self.ca.mint_expired(self.spiffe_id)
        self._set(s)
        return s

    def switch_trust_domain(self, trust_domain: str) -> SVID:
        self.ca = CA(trust_domain)
        self.spiffe_id = self.ca.id(self.spiffe_id.split("/", 3)[3] if self.spiffe_id.count("/") >= 3 else "workload")
        self._write_bundle()
        return self.rotate()

    def set_spiffe_id(self, spiffe_id: str) -> SVID:
        self.spiffe_id = self.ca.id(spiffe_id)
        return self.rotate()

    def deny(self) -> None:
        self._set(None)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def status(self) -> dict:
        s = self.svid
        return {"spiffe_id": self.spiffe_id, "trust_domain": self.ca.trust_domain, "streams": self.streams,
                "serial": s.cert.serial_number if s else None, "not_after": s.not_after.isoformat() if s else None}

    # --- gRPC ----------------------------------------------------------------------------
    @staticmethod
    def _check_header(context) -> None:
        md = dict(context.invocation_metadata())
        if md.get(HEADER) != "true":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")

    def _svid_response(self, s: SVID) -> workload_pb2.X509SVIDResponse:
        return workload_pb2.X509SVIDResponse(svids=[workload_pb2.X509SVID(
            spiffe_id=s.spiffe_id, x509_svid=s.cert_der, x509_svid_key=s.key_pkcs8_der, bundle=s.bundle_der)])

    def _stream(self, context, make):
        self._check_header(context)
        with self.cond:
            self.streams += 1
        try:
            seen = -1
            while context.is_active():
                with self.cond:
                    while self.version == seen and not self.stopping and context.is_active():
                        self.cond.wait(0.2)
                    if self.stopping or not context.is_active():
                        return
                    seen, s = self.version, self.svid
                if s is None:
                    context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")
                yield make(s)
        finally:
            with self.cond:
                self.streams -= 1

    def FetchX509SVID(self, request, context):
        yield from self._stream(context, self._svid_response)

    def FetchX509Bundles(self, request, context):
        yield from self._stream(context, lambda s: workload_pb2.X509BundlesResponse(
            bundles={f"spiffe://{trust_domain_of(s.spiffe_id)}": s.bundle_der}))

    def handle(self, cmd: dict) -> dict:
        c = cmd.get("cmd")
        if c == "rotate":
            self.rotate()
        elif c == "expire":
            self.issue_expired()
        elif c == "trust_domain":
            self.switch_trust_domain(cmd["trust_domain"])
        elif c == "set_id":
            self.set_spiffe_id(cmd["spiffe_id"])
        elif c == "deny":
            self.deny()
        elif c != "status":
            return {"ok": False, "message": f"unknown command {c!r}"}
        return {"ok": True, **self.status()}


def serve(api: WorkloadAPI, socket_path: str) -> grpc.Server:
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(api, server)
    server.add_insecure_port("unix:" + socket_path)
    server.start()
    return server


def fetch_x509_svids(socket_path: str, count: int = 1, timeout: float = 10, header: bool = True):
    """A Workload API client: returns the first `count` X509SVIDResponses of a FetchX509SVID stream."""
    with grpc.insecure_channel("unix:" + socket_path) as ch:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(ch)
        md = [(HEADER, "true")] if header else []
        out = []
        call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=md, timeout=timeout)
        for r in call:
            out.append(r)
            if len(out) >= count:
                call.cancel()
                break
        return out


def split_der(blob: bytes) -> list:
    """Concatenated DER certificates -> [x509.Certificate]."""
    from cryptography import x509
    out, i = [], 0
    while i < len(blob):
        # DER SEQUENCE: 0x30, then a short or long length
        if blob[i] != 0x30:
            raise ValueError("not a DER SEQUENCE")
        ln = blob[i + 1]
        if ln < 0x80:
            hdr, size = 2, ln
        else:
            k = ln & 0x7F
            hdr, size = 2 + k, int.from_bytes(blob[i + 2:i + 2 + k], "big")
        out.append(x509.load_der_x509_certificate(blob[i:i + hdr + size]))
        i += hdr + size
    return out


def svid_from_message(m) -> SVID:
    """An X509SVID message -> ca.SVID (leaf, PKCS#8 key, bundle)."""
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    certs = split_der(m.x509_svid)
    return SVID(m.spiffe_id, certs[0], load_der_private_key(m.x509_svid_key, None), split_der(m.bundle))


def _control_loop(api: WorkloadAPI, path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)

    def one(c: socket.socket) -> None:
        with c, c.makefile("rw") as f:
            for line in f:
                try:
                    ans = api.handle(json.loads(line))
                except Exception as e:  # noqa: BLE001
                    ans = {"ok": False, "message": str(e)}
                f.write(json.dumps(ans) + "\n")
                f.flush()

    while True:
        c, _ = srv.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--trust-domain", default="spiffe://test.weft")
    ap.add_argument("--id", default="workload", help="SPIFFE ID (or path in the trust domain) to hand out")
    ap.add_argument("--bundle", help="write the CA bundle (PEM) here")
    ap.add_argument("--ttl", type=float, default=3600)
    a = ap.parse_args()
    api = WorkloadAPI(CA(a.trust_domain), a.id, a.ttl, a.bundle)
    server = serve(api, a.socket)
    ctl = a.socket + ".ctl"
    threading.Thread(target=_control_loop, args=(api, ctl), daemon=True).start()
    signal.signal(signal.SIGUSR1, lambda *_: api.rotate())
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(json.dumps({"ready": True, "socket": a.socket, "control": ctl, "bundle": a.bundle, **api.status()}),
          flush=True)
    while not done.wait(0.5):
        pass
    api.stop()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
