#!/usr/bin/env python3
"""A stock-NSM-like cluster for one forwarder under test, driven by JSON lines on stdin/stdout.

    python3 Tests/peers/nsm_cluster/cluster.py --dir /tmp/x [--trust-domain spiffe://test.weft]
        [--weft-id weft] [--service icmp-responder] [--payload ETHERNET]
        [--nse-name nse-1] [--nse-netns /var/run/netns/<pod>] [--nse-src 172.16.1.101/32]
        [--nse-dst 172.16.1.100/32] [--nse-url inode|unix] [--expiry 60] [--registry-require-token]

Starts, in <dir>:
  agent.sock      SPIFFE Workload API for the forwarder (hands out spiffe://<td>/<weft-id>)
  bundle.pem      the trust domain's CA bundle (PEM)
  registry.sock   the NSMgr's registry (NS + NSE registries), mTLS (identity spiffe://<td>/nsmgr)
  nse.sock        the endpoint, mTLS (spiffe://<td>/nse); pre-registered in the registry as
                  <nse-name> for <service>, url inode://dev/ino of nse.sock (its fd is sent
                  with every Find answer), or unix://<dir>/nse.sock with --nse-url unix
then prints one line: {"ready":true, "agent_socket":..., "bundle":..., "registry_socket":...,
"nse_socket":..., "trust_domain":..., "ids":{...}, "pid":...}.

Commands: one JSON object per line on stdin; one JSON answer per line on stdout
({"ok":true,...} or {"ok":false,"code":"PERMISSION_DENIED"|"UNAVAILABLE"|...,"message":...});
a "seq" field is echoed back. See README.md for the list. EOF on stdin or SIGTERM stops it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "gen"))

import grpc  # noqa: E402

import grpcfd  # noqa: E402
import nsm_peers  # noqa: E402
import spire_agent  # noqa: E402
from ca import CA  # noqa: E402
from nsm_peers import log, to_dict  # noqa: E402


class Cluster:
    def __init__(self, a):
        self.a = a
        d = a.dir
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca = CA(a.trust_domain)
        self.paths = {
            "agent_socket": os.path.join(d, "agent.sock"),
            "bundle": os.path.join(d, "bundle.pem"),
            "registry_socket": os.path.join(d, "registry.sock"),
            "nse_socket": os.path.join(d, "nse.sock"),
        }
        self.ca.write_bundle(self.paths["bundle"])
        self.agent = spire_agent.WorkloadAPI(self.ca, a.weft_id, bundle_path=self.paths["bundle"])
        self.agent_server = spire_agent.serve(self.agent, self.paths["agent_socket"])
        wd = os.path.join(d, "peers")
        os.makedirs(wd, exist_ok=True)
        self.ids = {n: self.ca.id(n) for n in ("nsmgr", "nsc", "nse")}
        self.ids["weft"] = self.ca.id(a.weft_id)
        self.mgr_identity = grpcfd.Identity(self.ca.mint("nsmgr"), wd)
        self.nse_identity = grpcfd.Identity(self.ca.mint("nse"), wd)
        other = CA("spiffe://other.td")
        self.other_td = grpcfd.Identity(other.mint("nsmgr"), wd, extra_bundle_pem=self.ca.bundle_pem,
                                        accept_trust_domains=(self.ca.trust_domain,))
        self.expired = grpcfd.Identity(self.ca.mint_expired("nsmgr"), wd)
        self.registry = nsm_peers.Registry(self.mgr_identity, self.paths["registry_socket"], expiry=a.expiry,
                                           require_token=a.registry_require_token)
        self.registry.add_service(a.service, a.payload)
        self.nse = nsm_peers.Endpoint(a.nse_name, self.nse_identity, self.paths["nse_socket"], a.nse_netns,
                                      a.nse_src, a.nse_dst)
        self.registry.add_local_endpoint(a.nse_name, [a.service], self.paths["nse_socket"], a.nse_url)
        self.endpoints = {a.nse_name: self.nse}
        self.nsmgr = nsm_peers.NSMgr(self.mgr_identity, self.ca.mint("nsc"), other_td=self.other_td,
                                     expired=self.expired)

    def ready(self) -> dict:
        return {"ready": True, **self.paths, "trust_domain": f"spiffe://{self.ca.trust_domain}", "ids": self.ids,
                "pid": os.getpid(), "dir": self.dir}

    # --- helpers ---------------------------------------------------------------------------
    def _target(self, cmd: dict) -> str:
        t = cmd.get("target")
        if t:
            return t[len("unix://"):] if t.startswith("unix://") else t
        name = cmd.get("forwarder")
        with self.registry.lock:
            regs = [r["nse"] for r in self.registry.registrations
                    if (name and r["nse"]["name"] == name)
                    or (not name and "forwarder" in r["nse"].get("network_service_names", []))]
        if not regs:
            raise LookupError("no forwarder registered (give target or forwarder)")
        p = self.registry.dial_path(regs[-1]["name"])
        if p is None:
            raise LookupError(f"cannot reach {regs[-1]['name']} at {regs[-1].get('url')}")
        return p

    # --- commands --------------------------------------------------------------------------
    def cmd_ping(self, c):
        return {}

    def cmd_request(self, c):
        ans, sid = self.nsmgr.request(
            self._target(c), c.get("service", self.a.service), pod_netns=c.get("pod_netns_path"),
            ifname=c.get("ifname", "nsm-1"), mechanism=c.get("mechanism", "KERNEL"), token=c.get("token", "ok"),
            tls=c.get("tls", "ok"), labels=c.get("labels"), payload=c.get("payload", ""),
            extra_params=c.get("params"), endpoint_name=c.get("endpoint_name", ""),
            timeout=float(c.get("timeout", 20)))
        return {"conn_id": sid, "connection": to_dict(ans), "received_fds": self.nsmgr.last_received}

    def cmd_refresh(self, c):
        ans, sid = self.nsmgr.request(
            self._target(c), "", pod_netns=c.get("pod_netns_path"), token=c.get("token", "ok"),
            tls=c.get("tls", "ok"), refresh_of=c["conn_id"], timeout=float(c.get("timeout", 20)))
        return {"conn_id": sid, "connection": to_dict(ans), "received_fds": self.nsmgr.last_received}

    def cmd_close(self, c):
        self.nsmgr.close(self._target(c), c["conn_id"], token=c.get("token", "ok"), tls=c.get("tls", "ok"),
                         timeout=float(c.get("timeout", 20)))
        return {}

    def cmd_monitor(self, c):
        ev = nsm_peers.monitor_first_event(self.nsmgr, self._target(c), c.get("conn_id"), tls=c.get("tls", "ok"),
                                           timeout=float(c.get("timeout", 10)))
        return {"event": to_dict(ev)}

    def cmd_registrations(self, c):
        r = self.registry
        with r.lock:
            return {"registrations": list(r.registrations), "finds": list(r.finds),
                    "endpoints": [to_dict(e) for e in r.endpoints.values()],
                    "services": [to_dict(s) for s in r.services.values()]}

    def _nse(self, c) -> nsm_peers.Endpoint:
        name = c.get("name")
        if name is None:
            return self.nse
        if name not in self.endpoints:
            raise LookupError(f"no endpoint {name!r}")
        return self.endpoints[name]

    def cmd_add_nse(self, c):
        """Another endpoint: {name, service?, netns?, src?, dst?, url_mode?}; socket <dir>/<name>.sock,
        own SVID spiffe://<td>/<name>, registered like the first one."""
        name = c["name"]
        if name in self.endpoints:
            raise ValueError(f"endpoint {name!r} exists")
        path = os.path.join(self.dir, f"{name}.sock")
        ident = grpcfd.Identity(self.ca.mint(name), os.path.join(self.dir, "peers"))
        e = nsm_peers.Endpoint(name, ident, path, c.get("netns"), c.get("src", self.a.nse_src),
                               c.get("dst", self.a.nse_dst))
        service = c.get("service", self.a.service)
        if service not in self.registry.services:
            self.registry.add_service(service, c.get("payload", self.a.payload))
        self.registry.add_local_endpoint(name, [service], path, c.get("url_mode", self.a.nse_url))
        self.endpoints[name] = e
        return {"socket": path, "spiffe_id": ident.spiffe_id}

    def cmd_remove_nse(self, c):
        """Unregisters an endpoint and stops serving it."""
        e = self._nse(c)
        with self.registry.lock:
            self.registry.endpoints.pop(e.name, None)
            self.registry.local_files.pop(e.name, None)
        e.served.stop()
        self.endpoints.pop(e.name, None)
        return {}

    def cmd_nse(self, c):
        e = self._nse(c)
        for k, attr in (("refuse", "refuse"), ("policies", "policies"), ("src", "src_ip"), ("dst", "dst_ip"),
                        ("netns", "netns")):
            if k in c:
                setattr(e, attr, c[k])
        return {"refuse": e.refuse, "policies": e.policies, "src": e.src_ip, "dst": e.dst_ip, "netns": e.netns}

    def cmd_nse_calls(self, c):
        e = self._nse(c)
        with e.lock:
            return {"requests": list(e.requests), "closes": list(e.closes)}

    def cmd_rejected(self, c):
        return {"registry": list(self.registry.proxy.rejected), "nse": list(self._nse(c).proxy.rejected)}

    def cmd_svid(self, c):
        op = c.get("op", "status")
        ans = self.agent.handle({"cmd": op, **{k: v for k, v in c.items() if k not in ("cmd", "op")}})
        if not ans.get("ok"):
            raise ValueError(ans.get("message"))
        ans.pop("ok")
        return ans

    def cmd_rotate_peers(self, c):
        self.mgr_identity.set(self.ca.mint("nsmgr"))
        self.nse_identity.set(self.ca.mint("nse"))
        return {"nsmgr_serial": self.mgr_identity.svid.cert.serial_number,
                "nse_serial": self.nse_identity.svid.cert.serial_number}

    def stop(self):
        for s in [e.served for e in self.endpoints.values()] + [self.registry.served]:
            try:
                s.stop()
            except Exception:  # noqa: BLE001
                pass
        self.agent.stop()
        self.agent_server.stop(0.5)
        for p in ("agent_socket", "registry_socket", "nse_socket"):
            try:
                os.unlink(self.paths[p])
            except OSError:
                pass


def answer(c: Cluster, cmd: dict) -> dict:
    name = cmd.get("cmd", "")
    fn = getattr(c, "cmd_" + name.replace("-", "_"), None)
    if fn is None:
        return {"ok": False, "code": "UNKNOWN_COMMAND", "message": f"unknown command {name!r}"}
    try:
        return {"ok": True, **fn(cmd)}
    except grpc.RpcError as e:
        return {"ok": False, "code": e.code().name, "message": e.details()}
    except (ConnectionError, TimeoutError) as e:
        return {"ok": False, "code": "UNAVAILABLE", "message": str(e)}
    except (KeyError, LookupError, ValueError) as e:
        return {"ok": False, "code": "INVALID_ARGUMENT", "message": f"{type(e).__name__}: {e}"}
    except Exception as e:  # noqa: BLE001
        log(traceback.format_exc())
        return {"ok": False, "code": "INTERNAL", "message": f"{type(e).__name__}: {e}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--trust-domain", default="spiffe://test.weft")
    ap.add_argument("--weft-id", default="weft", help="SPIFFE ID (or path) the agent hands to the forwarder")
    ap.add_argument("--service", default="icmp-responder")
    ap.add_argument("--payload", default="ETHERNET")
    ap.add_argument("--nse-name", default="nse-1")
    ap.add_argument("--nse-netns", default=None, help="the endpoint pod's netns file (e.g. /var/run/netns/x)")
    ap.add_argument("--nse-src", default="172.16.1.101/32", help="client-side address the NSE hands out")
    ap.add_argument("--nse-dst", default="172.16.1.100/32", help="endpoint-side address the NSE hands out")
    ap.add_argument("--nse-url", choices=("inode", "unix"), default="inode")
    ap.add_argument("--expiry", type=float, default=60, help="registration expiry the registry grants (s)")
    ap.add_argument("--registry-require-token", action="store_true",
                    help="refuse NSE Register/Unregister without a valid nsm-client-token of the TLS peer")
    a = ap.parse_args()
    c = Cluster(a)
    out_lock = threading.Lock()

    def emit(obj):
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    signal.signal(signal.SIGTERM, lambda *_: (c.stop(), os._exit(0)))
    emit(c.ready())
    try:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError as e:
                emit({"ok": False, "code": "INVALID_ARGUMENT", "message": f"bad JSON: {e}"})
                continue
            if cmd.get("cmd") == "quit":
                emit({"ok": True, **({"seq": cmd["seq"]} if "seq" in cmd else {})})
                break
            ans = answer(c, cmd)
            if "seq" in cmd:
                ans["seq"] = cmd["seq"]
            emit(ans)
    finally:
        c.stop()
        os._exit(0)


if __name__ == "__main__":
    main()
