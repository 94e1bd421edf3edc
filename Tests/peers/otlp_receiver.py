#!/usr/bin/env python3
"""A test OTLP/gRPC collector: serves TraceService/Export and MetricsService/Export
(opentelemetry-proto's official messages and gRPC stubs, grpcio) and writes what it
receives as JSON lines, one per span and one per metric data point:

  {"kind": "span", "trace_id": hex, "span_id": hex, "parent_span_id": hex or "",
   "trace_state": s, "flags": n, "name": s, "span_kind": "SPAN_KIND_SERVER", ...,
   "start": ns, "end": ns, "status_code": "STATUS_CODE_ERROR" or ..., "status_message": s,
   "attributes": {key: value}, "resource": {key: value}, "scope": name, "scope_version": v}
  {"kind": "metric", "name": s, "type": "sum" | "gauge" | "histogram", "monotonic": bool,
   "temporality": s, "attributes": {...}, "value": x (sum/gauge), "count", "sum",
   "bounds", "bucket_counts" (histogram), "resource": {...}}

Values are decoded with the official generated classes: a message Weft encoded with
its own subset of the protos that did not decode here would fail the test.

  otlp_receiver.py --out FILE [--host 127.0.0.1] [--port 0]

Prints "listening PORT" on stdout once serving; runs until SIGTERM/SIGINT.
"""
import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


def any_value(v):
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Sink:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1)

    def write(self, rows):
        with self.lock:
            for r in rows:
                self.f.write(json.dumps(r, sort_keys=True) + "\n")
            self.f.flush()


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        rows = []
        for rs in request.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    rows.append({
                        "kind": "span",
                        "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(), "trace_state": s.trace_state,
                        "flags": s.flags, "name": s.name,
                        "span_kind": trace_pb2.Span.SpanKind.Name(s.kind),
                        "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                        "status_code": trace_pb2.Status.StatusCode.Name(s.status.code),
                        "status_message": s.status.message,
                        "attributes": attrs(s.attributes), "resource": resource,
                        "scope": ss.scope.name, "scope_version": ss.scope.version,
                    })
        self.sink.write(rows)
        return trace_service_pb2.ExportTraceServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        rows = []
        for rm in request.resource_metrics:
            resource = attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    which = m.WhichOneof("data")
                    base = {"kind": "metric", "name": m.name, "description": m.description, "unit": m.unit,
                            "type": which, "resource": resource, "scope": sm.scope.name}
                    if which in ("sum", "gauge"):
                        d = getattr(m, which)
                        for p in d.data_points:
                            r = dict(base, attributes=attrs(p.attributes),
                                     value=getattr(p, p.WhichOneof("value")) if p.WhichOneof("value") else None,
                                     start=p.start_time_unix_nano, time=p.time_unix_nano)
                            if which == "sum":
                                r["monotonic"] = d.is_monotonic
                                r["temporality"] = d.aggregation_temporality
                            rows.append(r)
                    elif which == "histogram":
                        for p in m.histogram.data_points:
                            rows.append(dict(base, attributes=attrs(p.attributes), count=p.count, sum=p.sum,
                                             bounds=list(p.explicit_bounds), bucket_counts=list(p.bucket_counts),
                                             temporality=m.histogram.aggregation_temporality))
                    else:
                        rows.append(dict(base, unsupported=True))
        self.sink.write(rows)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    # A parent may start us with SIGTERM blocked (the mask is inherited): unblock it before
    # gRPC's threads start, so that SIGTERM reaches the handler below.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    sink = Sink(a.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(sink), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(sink), server)
    port = server.add_insecure_port("%s:%d" % (a.host, a.port))
    if port == 0:
        sys.exit("cannot listen on %s:%d" % (a.host, a.port))
    server.start()
    print("listening %d" % port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        pass
    server.stop(1).wait()


if __name__ == "__main__":
    main()
