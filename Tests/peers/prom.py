#!/usr/bin/env python3
"""Prometheus helpers for Weft's system tests.

  prom.py scrape URL            GET URL, parse it with prometheus_client's own
                                parser and print one JSON object:
                                {"families": {name: {"type": t, "samples":
                                [[sample_name, {labels}, value], ...]}},
                                "content_type": ..., "lint": promtool's verdict}
  prom.py query BASE EXPR       an instant query against a Prometheus server's
                                HTTP API; prints its JSON "data.result"
  prom.py http URL METHOD       print the HTTP status of METHOD URL

Exits non-zero (with the reason on stderr) when the exposition does not parse.
"""
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
        ctype = r.headers.get("Content-Type", "")
    fams = {}
    for f in text_string_to_metric_families(body):
        fams[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    lint = "promtool not installed"
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
        lint = "ok" if p.returncode == 0 else (p.stdout + p.stderr).strip()
    print(json.dumps({"families": fams, "content_type": ctype, "lint": lint}))


def query(base, expr):
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        d = json.load(r)
    if d.get("status") != "success":
        sys.exit("query failed: %s" % d)
    print(json.dumps(d["data"]["result"]))


def http(url, method):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            print(r.status)
    except urllib.error.HTTPError as e:
        print(e.code)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "scrape":
        scrape(sys.argv[2])
    elif cmd == "query":
        query(sys.argv[2], sys.argv[3])
    elif cmd == "http":
        http(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
