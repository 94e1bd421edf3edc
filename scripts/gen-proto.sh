#!/usr/bin/env bash
# Regenerate the committed Swift code for NSM's protos and the subset of OTLP's Weft
# exports traces and metrics with (Sources/WeftNSMProto/Generated).
# Builds protoc-gen-swift and protoc-gen-grpc-swift-2 from the pinned grpc-swift-protobuf
# release (about 3-10 minutes the first time) into $WEFT_TOOLS (default /work/tools or ~/.cache).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tools=${WEFT_TOOLS:-$HOME/.cache/weft-tools}
version=2.4.1
command -v protoc >/dev/null || apt-get install -y -q protobuf-compiler
src=$tools/grpc-swift-protobuf-$version
if [ ! -x "$src/.build/release/protoc-gen-grpc-swift-2" ] || [ ! -x "$src/.build/release/protoc-gen-swift" ]; then
    mkdir -p "$tools"
    [ -d "$src" ] || git clone -q --branch "$version" https://github.com/grpc/grpc-swift-protobuf "$src"
    (cd "$src" && swift build -c release --product protoc-gen-grpc-swift-2 && swift build -c release --product protoc-gen-swift)
fi
proto=$here/Sources/WeftNSMProto/proto
out=$here/Sources/WeftNSMProto/Generated
rm -rf "$out"; mkdir -p "$out"
files=(networkservice/connectioncontext.proto networkservice/connection.proto networkservice/networkservice.proto
       registry/registry.proto grpc/health/v1/health.proto spiffe/workload.proto
       opentelemetry/proto/common/v1/common.proto opentelemetry/proto/resource/v1/resource.proto
       opentelemetry/proto/trace/v1/trace.proto opentelemetry/proto/metrics/v1/metrics.proto
       opentelemetry/proto/collector/trace/v1/trace_service.proto
       opentelemetry/proto/collector/metrics/v1/metrics_service.proto)
protoc -I "$proto" -I /usr/include \
    --plugin=protoc-gen-swift="$src/.build/release/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift="$src/.build/release/protoc-gen-grpc-swift-2" \
    --swift_out="$out" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
    --grpc-swift_out="$out" --grpc-swift_opt=Visibility=Public,FileNaming=PathToUnderscores,Client=true,Server=true \
    "${files[@]}"
echo "generated: $(ls "$out" | wc -l) files in $out"
