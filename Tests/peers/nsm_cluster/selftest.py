#!/usr/bin/env python3
"""Self-test of the NSM cluster peers, without Weft:

    python3 Tests/peers/nsm_cluster/selftest.py

A: the Workload API server (spire_agent.py as a process): SVID stream, header check,
   rotation by SIGUSR1 pushed on an open stream, expired SVID, trust-domain switch, bundles.
B: NSMgr -> NSE directly over mTLS + grpcfd: tokens pass the policies, each bad token and
   bad TLS case is refused as NSM refuses it, fds pass both ways, refresh/close, rotation.
C: cluster.py as a process, driven by JSON lines, with a stand-in forwarder that gets its SVID
   from the cluster's Workload API, registers (inode URL + socket fd), Finds the NSE (gets
   its socket fd), dials it through /proc/self/fd/N, and is requested by the cluster's NSMgr.
Ends with 'N passed, N failed'; exits 1 if anything failed.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "gen"))

import grpc  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

import grpcfd  # noqa: E402
import nsm_peers  # noqa: E402
import spire_agent  # noqa: E402
import tokens  # noqa: E402
from ca import CA, spiffe_id_from_cert  # noqa: E402
from registry import registry_pb2  # noqa: E402
from spiffe import workload_pb2, workload_pb2_grpc  # noqa: E402

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, cond: bool, detail: str = "") -> bool:
    RESULTS.append((name, bool(cond), detail))
    print(f"{'PASS' if cond else 'FAIL'} {name}" + (f" -- {detail}" if detail and not cond else ""), flush=True)
    return bool(cond)


def section(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001
        check(f"{fn.__name__} ran to the end", False, traceback.format_exc())


def pubkey_der(k) -> bytes:
    return k.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Stream:
    """A FetchX509SVID stream read on a thread into a queue."""

    def __init__(self, sock: str):
        self.ch = grpc.insecure_channel("unix:" + sock)
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(self.ch)
        self.call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=[("workload.spiffe.io", "true")])
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for r in self.call:
                self.q.put(r)
        except grpc.RpcError:
            pass

    def next(self, timeout=5.0):
        return self.q.get(timeout=timeout)

    def close(self):
        self.call.cancel()
        self.ch.close()


def ctl(path: str, cmd: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall((json.dumps(cmd) + "\n").encode())
        f = s.makefile()
        return json.loads(f.readline())


# =============================================================================================

def test_a_workload_api():
    d = tempfile.mkdtemp(prefix="nsmc-a-")
    sock, bundle = os.path.join(d, "agent.sock"), os.path.join(d, "bundle.pem")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "spire_agent.py"), "--socket", sock, "--trust-domain",
                          "spiffe://test.weft", "--id", "weft", "--bundle", bundle], stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(p.stdout.readline())
        check("A agent prints a ready line", ready.get("ready") and ready["spiffe_id"] == "spiffe://test.weft/weft",
              str(ready))
        r = spire_agent.fetch_x509_svids(sock)[0]
        check("A one SVID per answer", len(r.svids) == 1)
        m = r.svids[0]
        svid = spire_agent.svid_from_message(m)
        check("A spiffe_id and URI SAN", m.spiffe_id == "spiffe://test.weft/weft"
              and spiffe_id_from_cert(svid.cert) == m.spiffe_id)
        check("A x509_svid_key is PKCS#8 of the leaf's key (EC P-256)",
              isinstance(svid.key.curve, ec.SECP256R1) and pubkey_der(svid.key.public_key()) ==
              pubkey_der(svid.cert.public_key()))
        ca_cert = svid.bundle[0]
        try:
            ca_cert.public_key().verify(svid.cert.signature, svid.cert.tbs_certificate_bytes,
                                        ec.ECDSA(svid.cert.signature_hash_algorithm))
            signed = True
        except Exception:  # noqa: BLE001
            signed = False
        check("A bundle (DER) holds the CA that signed the SVID", len(svid.bundle) == 1 and signed)
        with open(bundle, "rb") as f:
            check("A bundle file = the CA", f.read() == ca_cert.public_bytes(serialization.Encoding.PEM))
        try:
            spire_agent.fetch_x509_svids(sock, header=False)
            check("A refuses a call without workload.spiffe.io", False)
        except grpc.RpcError as e:
            check("A refuses a call without workload.spiffe.io: INVALID_ARGUMENT",
                  e.code() == grpc.StatusCode.INVALID_ARGUMENT, str(e.code()))
        with grpc.insecure_channel("unix:" + sock) as ch:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(ch)
            try:
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["x"]), metadata=[("workload.spiffe.io", "true")])
                check("A FetchJWTSVID UNIMPLEMENTED", False)
            except grpc.RpcError as e:
                check("A FetchJWTSVID UNIMPLEMENTED", e.code() == grpc.StatusCode.UNIMPLEMENTED)
            b = next(iter(stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(),
                                                metadata=[("workload.spiffe.io", "true")], timeout=5)))
            check("A FetchX509Bundles keyed by trust domain", list(b.bundles) == ["spiffe://test.weft"]
                  and b.bundles["spiffe://test.weft"] == m.bundle)

        st = Stream(sock)
        first = spire_agent.svid_from_message(st.next().svids[0])
        os.kill(p.pid, signal.SIGUSR1)
        second = spire_agent.svid_from_message(st.next().svids[0])
        check("A SIGUSR1 rotates: new cert and new key pushed on the open stream",
              second.cert.serial_number != first.cert.serial_number
              and pubkey_der(second.key.public_key()) != pubkey_der(first.key.public_key()))
        ans = ctl(sock + ".ctl", {"cmd": "expire"})
        exp = spire_agent.svid_from_message(st.next().svids[0])
        check("A control 'expire' pushes an already-expired SVID",
              ans["ok"] and exp.not_after < _dt.datetime.now(_dt.timezone.utc))
        ans = ctl(sock + ".ctl", {"cmd": "trust_domain", "trust_domain": "spiffe://other.td"})
        other = spire_agent.svid_from_message(st.next().svids[0])
        with open(bundle, "rb") as f:
            newb = f.read()
        check("A control 'trust_domain' switches CA and ID",
              ans["ok"] and other.spiffe_id == "spiffe://other.td/weft"
              and other.bundle[0].public_bytes(serialization.Encoding.PEM) == newb
              and newb != ca_cert.public_bytes(serialization.Encoding.PEM), other.spiffe_id)
        ans = ctl(sock + ".ctl", {"cmd": "set_id", "spiffe_id": "spiffe://other.td/nsmgr"})
        check("A control 'set_id'", spire_agent.svid_from_message(st.next().svids[0]).spiffe_id ==
              "spiffe://other.td/nsmgr")
        st.close()
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, ignore_errors=True)


# =============================================================================================

def test_b_nsmgr_to_nse():
    d = tempfile.mkdtemp(prefix="nsmc-b-")
    ca = CA("spiffe://test.weft")
    ident = lambda n: grpcfd.Identity(ca.mint(n), d)  # noqa: E731
    nse_id = ident("nse")
    nse_sock = os.path.join(d, "nse.sock")
    nse_netns = "/proc/self/ns/net"
    nse = nsm_peers.Endpoint("nse-1", nse_id, nse_sock, nse_netns)
    other = CA("spiffe://other.td")
    mgr = nsm_peers.NSMgr(ident("nsmgr"), ca.mint("nsc"),
                          other_td=grpcfd.Identity(other.mint("nsmgr"), d, extra_bundle_pem=ca.bundle_pem,
                                                   accept_trust_domains=("test.weft",)),
                          expired=grpcfd.Identity(ca.mint_expired("nsmgr"), d))
    # a "pod" netns stand-in for the client: any file works for fd passing; use a temp file
    pod = os.path.join(d, "pod-netns")
    open(pod, "w").close()
    try:
        ans, sid = mgr.request(nse_sock, "icmp-responder", pod_netns=pod, ifname="nsm-1")
        names = [s.name for s in ans.path.path_segments]
        check("B request answered", ans.mechanism.type == "KERNEL", str(ans))
        check("B answer: caller's index and id, path trimmed after the NSE",
              ans.path.index == 1 and ans.id == sid and names == ["nsc", "nsmgr", "nse-1"], f"{names} {ans.path.index}")
        rec = nse.requests[-1]
        check("B NSE: policies pass", rec["policies_failed"] == [] and rec["metadata_token"], str(rec["policies_failed"]))
        check("B NSE: TLS peer is the NSMgr's SVID", rec["peer_id"] == "spiffe://test.weft/nsmgr")
        segs = [tokens.decode(s.token) for s in ans.path.path_segments]
        check("B tokens: sub/aud chain nsc->nsmgr->nse",
              segs[0]["sub"] == "spiffe://test.weft/nsc" and segs[0]["aud"] == ["spiffe://test.weft/nsmgr"]
              and segs[1]["sub"] == "spiffe://test.weft/nsmgr" and segs[1]["aud"] == ["spiffe://test.weft/nse"]
              and segs[2]["sub"] == "spiffe://test.weft/nse" and segs[2]["aud"] == ["spiffe://test.weft/nsmgr"],
              json.dumps(segs))
        check("B NSE's own token is ES256 by its SVID", tokens.verify_es256(ans.path.path_segments[2].token,
                                                                            nse_id.svid.cert))
        check("B tokens all pass the policies as seen by a next hop",
              tokens.tokens_chained([{"token": s.token} for s in ans.path.path_segments])
              and tokens.tokens_expired([{"token": s.token} for s in ans.path.path_segments]))
        st = os.stat(pod)
        url = f"inode://{st.st_dev}/{st.st_ino}"
        check("B fd NSMgr->NSE: inodeURL sent, fd received, fstat matches",
              rec["received_fds"].get(url) == {"received": True, "matches": True}, str(rec["received_fds"]))
        st = os.stat(nse_netns)
        nurl = f"inode://{st.st_dev}/{st.st_ino}"
        check("B fd NSE->NSMgr: answer inodeURL is the NSE netns, fd received, fstat matches",
              ans.mechanism.parameters.get("inodeURL") == nurl
              and mgr.last_received.get(nurl) == {"received": True, "matches": True}, str(mgr.last_received))
        check("B IP context from the NSE", list(ans.context.ip_context.src_ip_addrs) == ["172.16.1.101/32"]
              and list(ans.context.ip_context.dst_ip_addrs) == ["172.16.1.100/32"])

        expected = {"forged": "prev_token_signed", "expired": "tokens_expired", "broken-chain": "tokens_chained",
                    "none": "tokens_chained", "aud-string": "tokens_chained"}
        for mode, policy in expected.items():
            n = len(nse.requests)
            try:
                mgr.request(nse_sock, "icmp-responder", pod_netns=pod, token=mode)
                check(f"B token '{mode}' refused", False, "it was accepted")
            except grpc.RpcError as e:
                got = nse.requests[n]["policies_failed"] if len(nse.requests) > n else None
                check(f"B token '{mode}' refused PERMISSION_DENIED by {policy}",
                      e.code() == grpc.StatusCode.PERMISSION_DENIED and got and got[0] == policy, f"{e.code()} {got}")
        check("B token 'none' also fails tokens_valid", "tokens_valid" in (nse.requests[-2]["policies_failed"] or []),
              str(nse.requests[-2]["policies_failed"]))

        for mode, why in (("other-td", "certificate verify failed"), ("plaintext", "WRONG_VERSION_NUMBER"),
                          ("expired-svid", "certificate has expired")):
            n_rej, n_req = len(nse.proxy.rejected), len(nse.requests)
            try:
                mgr.request(nse_sock, "icmp-responder", pod_netns=pod, tls=mode, timeout=4)
                check(f"B TLS '{mode}' refused", False, "it was accepted")
            except (ConnectionError, grpc.RpcError, TimeoutError) as e:
                rej = nse.proxy.rejected[n_rej:]
                check(f"B TLS '{mode}' refused by the server's handshake ({why})",
                      len(nse.requests) == n_req and any(why in r for r in rej), f"{e} / {rej}")

        again, sid2 = mgr.request(nse_sock, "", refresh_of=sid)
        check("B refresh keeps ids", sid2 == sid and [s.id for s in again.path.path_segments] ==
              [s.id for s in ans.path.path_segments] and nse.requests[-1]["policies_failed"] == [])
        try:
            mgr.close(nse_sock, sid, token="forged")
            check("B close with a forged token refused", False)
        except grpc.RpcError as e:
            check("B close with a forged token refused", e.code() == grpc.StatusCode.PERMISSION_DENIED)
        mgr.close(nse_sock, sid)
        check("B close passes the policies", nse.closes[-1]["policies_failed"] == [] and not nse.connections)

        old = nse_id.svid.cert.serial_number
        nse_id.set(ca.mint("nse"))
        dialer = grpcfd.ClientDialer(nse_sock, mgr.identity)
        ch = grpcfd.channel(dialer)
        grpc.channel_ready_future(ch).result(timeout=5)
        c = dialer.wait()
        check("B a rotated server SVID is used for new connections; TLS >= 1.2 with ALPN h2",
              c.peer_cert.serial_number != old and c.tls_version in ("TLSv1.2", "TLSv1.3") and c.alpn == "h2",
              f"{c.tls_version} {c.alpn}")
        ch.close()
        dialer.close()

        # an independent TLS client (openssl s_client) against the same server socket
        if shutil.which("openssl"):
            crt, key = ca.mint("probe").write(os.path.join(d, "probe"))
            bundle = ca.write_bundle(os.path.join(d, "bundle.pem"))

            def s_client(*extra):
                n = len(nse.proxy.rejected)
                r = subprocess.run(["openssl", "s_client", "-unix", nse_sock, "-CAfile", bundle, "-alpn", "h2",
                                    "-verify_return_error", "-brief", *extra], input=b"", capture_output=True, timeout=20)
                time.sleep(0.3)
                return r.returncode, r.stderr.decode(errors="replace"), nse.proxy.rejected[n:]

            rc, err, rej = s_client("-cert", crt, "-key", key, "-tls1_2")
            check("B openssl s_client (TLS 1.2, client SVID) completes the handshake, server verified",
                  rc == 0 and "Verification: OK" in err and not rej, err[-300:] + str(rej))
            rc, err, rej = s_client()
            check("B openssl s_client without a client certificate is refused by the server",
                  any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in r or "certificate" in r for r in rej), err[-300:] + str(rej))
            rc, err, rej = s_client("-cert", crt, "-key", key, "-tls1_1")
            check("B TLS 1.1 is refused", rc != 0, err[-300:])
        else:
            print("SKIP openssl s_client checks (no openssl binary)")
    finally:
        nse.served.stop()
        shutil.rmtree(d, ignore_errors=True)


# =============================================================================================

class Driver:
    def __init__(self, args):
        self.p = subprocess.Popen([sys.executable, os.path.join(HERE, "cluster.py")] + args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.seq = 0

    def line(self, timeout=30.0) -> dict:
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("no answer from cluster.py")
        s = self.p.stdout.readline()
        if not s:
            raise EOFError("cluster.py exited")
        return json.loads(s)

    def __call__(self, cmd: str, **kw) -> dict:
        self.seq += 1
        self.p.stdin.write(json.dumps({"cmd": cmd, "seq": self.seq, **kw}) + "\n")
        self.p.stdin.flush()
        a = self.line(60)
        assert a.get("seq") == self.seq, a
        return a

    def stop(self):
        try:
            self("quit")
        except Exception:  # noqa: BLE001
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def test_c_cluster_driver():
    d = tempfile.mkdtemp(prefix="nsmc-c-")
    drv = Driver(["--dir", d, "--nse-netns", "/proc/self/ns/net"])
    fwd = None
    try:
        ready = drv.line()
        check("C cluster.py ready line", ready.get("ready") and all(os.path.exists(ready[k]) for k in (
            "agent_socket", "bundle", "registry_socket", "nse_socket")), str(ready))
        # the stand-in forwarder takes its SVID from the cluster's Workload API, as Weft does
        m = spire_agent.fetch_x509_svids(ready["agent_socket"])[0].svids[0]
        check("C the agent hands out the forwarder's ID", m.spiffe_id == ready["ids"]["weft"], m.spiffe_id)
        fwd_id = grpcfd.Identity(spire_agent.svid_from_message(m), d)
        fwd_sock = os.path.join(d, "fwd.sock")
        fwd = nsm_peers.Endpoint("weft-fwd", fwd_id, fwd_sock, None)
        nse = registry_pb2.NetworkServiceEndpoint(name="weft-fwd", network_service_names=["forwarder"])
        nse.network_service_labels["forwarder"].labels["p2p"] = "true"
        got = nsm_peers.registry_register(ready["registry_socket"], fwd_id, nse, listen_socket=fwd_sock)
        regs = drv("registrations")
        r = regs["registrations"][-1] if regs["registrations"] else {}
        st = os.stat(fwd_sock)
        check("C register: inode URL of the listen socket, its fd received by the registry, expiry set",
              r.get("nse", {}).get("url") == f"inode://{st.st_dev}/{st.st_ino}" and r.get("received_fd")
              and got.HasField("expiration_time") and r.get("peer_id") == ready["ids"]["weft"]
              and r.get("token", {}).get("signed_by_peer"), json.dumps(r))

        found, fds = nsm_peers.registry_find(ready["registry_socket"], fwd_id, registry_pb2.NetworkServiceEndpoint(
            network_service_names=["icmp-responder"]))
        st = os.stat(ready["nse_socket"])
        nurl = f"inode://{st.st_dev}/{st.st_ino}"
        fd = fds.get(nurl)
        ok = fd is not None and (os.fstat(fd).st_dev, os.fstat(fd).st_ino) == (st.st_dev, st.st_ino)
        check("C find: the NSE's url is inode://dev/ino of its socket and the fd came with the answer",
              [e.name for e in found] == ["nse-1"] and found[0].url == nurl and ok, f"{found} {fds}")
        # the forwarder dials the NSE through the received fd
        fmgr = nsm_peers.NSMgr(fwd_id, CA("spiffe://test.weft").mint("nsc"))
        try:
            pod = os.path.join(d, "pod-netns")
            open(pod, "w").close()
            ans, _ = fmgr.request(f"/proc/self/fd/{fd}", "icmp-responder", pod_netns=pod)
            nsurl = ans.mechanism.parameters.get("inodeURL", "")
            check("C dial through /proc/self/fd/N of the received fd reaches the NSE over mTLS; its netns fd comes back",
                  fmgr.last_received.get(nsurl) == {"received": True, "matches": True}, str(fmgr.last_received))
        except Exception as e:  # noqa: BLE001
            check("C dial through /proc/self/fd/N of the received fd reaches the NSE over mTLS", False, repr(e))
        for f in fds.values():
            os.close(f)

        a = drv("request", pod_netns_path="/proc/self/ns/net", ifname="nsm-1")
        st = os.stat("/proc/self/ns/net")
        url = f"inode://{st.st_dev}/{st.st_ino}"
        rec = fwd.requests[-1] if fwd.requests else {}
        check("C driver request reaches the registered forwarder through its fd",
              a.get("ok") and a["connection"]["path"]["index"] == 1 and rec.get("policies_failed") == [],
              json.dumps(a)[:600])
        check("C driver request: nsm-client-token from the NSMgr, aud = forwarder",
              rec.get("peer_id") == ready["ids"]["nsmgr"] and rec.get("metadata_token")
              and tokens.decode(rec["connection"]["path"]["path_segments"][1]["token"])["aud"] == [ready["ids"]["weft"]])
        check("C driver request: pod netns fd received by the forwarder, fstat matches",
              rec.get("received_fds", {}).get(url) == {"received": True, "matches": True}, str(rec.get("received_fds")))
        for mode, policy in (("forged", "prev_token_signed"), ("expired", "tokens_expired"),
                             ("broken-chain", "tokens_chained"), ("none", "tokens_chained")):
            b = drv("request", pod_netns_path="/proc/self/ns/net", token=mode)
            check(f"C driver token '{mode}' -> PERMISSION_DENIED ({policy})",
                  not b["ok"] and b["code"] == "PERMISSION_DENIED" and fwd.requests[-1]["policies_failed"][0] == policy,
                  json.dumps(b))
        for mode in ("other-td", "plaintext", "expired-svid"):
            b = drv("request", pod_netns_path="/proc/self/ns/net", tls=mode, timeout=4)
            check(f"C driver TLS '{mode}' -> refused", not b["ok"] and b["code"] == "UNAVAILABLE", json.dumps(b))
        b = drv("monitor", conn_id=a["conn_id"])
        ev = b.get("event", {})
        check("C driver monitor: first event INITIAL_STATE_TRANSFER (or type omitted = 0) with the connection",
              b.get("ok") and ev.get("type", "INITIAL_STATE_TRANSFER") == "INITIAL_STATE_TRANSFER"
              and len(ev.get("connections", {})) == 1, json.dumps(b)[:300])
        b = drv("refresh", conn_id=a["conn_id"])
        check("C driver refresh", b.get("ok") and b["conn_id"] == a["conn_id"], json.dumps(b)[:300])
        b = drv("close", conn_id=a["conn_id"])
        check("C driver close", b.get("ok") and fwd.closes and fwd.closes[-1]["policies_failed"] == [], json.dumps(b))

        st = Stream(ready["agent_socket"])
        first = st.next().svids[0]
        b = drv("svid", op="rotate")
        second = st.next().svids[0]
        check("C driver svid rotate -> pushed on the open stream", b.get("ok") and second.x509_svid != first.x509_svid
              and second.x509_svid_key != first.x509_svid_key)
        st.close()
        b = drv("add_nse", name="nse-2", netns="/proc/self/ns/net")
        found, fds = nsm_peers.registry_find(ready["registry_socket"], fwd_id, registry_pb2.NetworkServiceEndpoint(
            network_service_names=["icmp-responder"]))
        check("C add_nse: a second endpoint is registered and found (with its fd)",
              b.get("ok") and sorted(e.name for e in found) == ["nse-1", "nse-2"] and len(fds) == 2, json.dumps(b))
        for f in fds.values():
            os.close(f)
        b = drv("remove_nse", name="nse-2")
        found, fds = nsm_peers.registry_find(ready["registry_socket"], fwd_id, registry_pb2.NetworkServiceEndpoint(
            name="nse-2"))
        check("C remove_nse", b.get("ok") and not found)
        b = drv("nonsense")
        check("C unknown command answered", not b["ok"] and b["code"] == "UNKNOWN_COMMAND")
    finally:
        drv.stop()
        if fwd:
            fwd.served.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    t0 = time.monotonic()
    for fn in (test_a_workload_api, test_b_nsmgr_to_nse, test_c_cluster_driver):
        print(f"--- {fn.__name__}", flush=True)
        section(fn)
    failed = [r for r in RESULTS if not r[1]]
    print(f"selftest took {time.monotonic() - t0:.1f}s")
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
