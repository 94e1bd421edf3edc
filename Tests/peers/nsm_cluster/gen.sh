#!/bin/sh
# Regenerates gen/ from Weft's NSM protos and the Workload API subset in proto/.
# Needs: pip install grpcio-tools   (generated with grpcio-tools 1.85.1, protobuf 7.x)
# The health proto is compiled from its own folder (as "health.proto" -> gen/health_pb2*.py)
# so that no gen/grpc/ package shadows the real grpc module.
set -e
here=$(cd "$(dirname "$0")" && pwd)
weft=$here/../../../Sources/WeftNSMProto/proto
rm -rf "$here/gen"; mkdir -p "$here/gen"
python3 -m grpc_tools.protoc -I"$weft" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" \
  networkservice/connectioncontext.proto networkservice/connection.proto networkservice/networkservice.proto \
  registry/registry.proto
# our own Workload API definition only (not whatever Weft's tree may carry under the same name)
python3 -m grpc_tools.protoc -I"$here/proto" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" spiffe/workload.proto
python3 -m grpc_tools.protoc -I"$weft/grpc/health/v1" \
  --python_out="$here/gen" --grpc_python_out="$here/gen" health.proto
for d in networkservice registry spiffe; do touch "$here/gen/$d/__init__.py"; done
