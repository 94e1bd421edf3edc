#!/usr/bin/env bash
# Build Weft's container image (deploy/Containerfile) from the repository root.
#
#   deploy/build-image.sh [TAG]              full build: Swift from swift.org, swift build
#                                            in the image, grpc-health-probe from Go modules
#   deploy/build-image.sh --prebuilt [TAG]   runtime stage only, around this machine's
#                                            .build/release/weftd and weftctl (build them
#                                            first: swift build -c release; BIN_DIR=.build/debug
#                                            takes the debug ones); no probe binary
#
# From the environment: ENGINE (podman, docker or buildah; default: the first found),
# DEBIAN_IMAGE (default docker.io/library/debian:bookworm-slim), BUILD_FLAGS (more flags
# for the engine, e.g. "--isolation chroot" where no OCI runtime can start containers).
set -euo pipefail
cd "$(dirname "$0")/.."

prebuilt=0
if [ "${1:-}" = --prebuilt ]; then prebuilt=1; shift; fi
tag=${1:-localhost/weft:dev}
engine=${ENGINE:-}
if [ -z "$engine" ]; then
  for e in podman docker buildah; do command -v "$e" >/dev/null && { engine=$e; break; }; done
fi
[ -n "$engine" ] || { echo "build-image.sh: no podman, docker or buildah" >&2; exit 1; }
case "$engine" in
  buildah) build=(buildah bud --layers --ignorefile deploy/Containerfile.dockerignore) ;;
  podman)  build=(podman build --ignorefile deploy/Containerfile.dockerignore) ;;
  *)       build=("$engine" build) ;;   # docker/BuildKit reads deploy/Containerfile.dockerignore itself
esac

args=(-f deploy/Containerfile -t "$tag")
# shellcheck disable=SC2206
[ -n "${BUILD_FLAGS:-}" ] && args+=(${BUILD_FLAGS})
[ -n "${DEBIAN_IMAGE:-}" ] && args+=(--build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE")

if [ "$prebuilt" = 1 ]; then
  out=deploy/.prebuilt
  rm -rf "$out"
  trap 'rm -rf deploy/.prebuilt' EXIT
  mkdir -p "$out/usr/local/bin" "$out/opt/swift/usr/lib/swift/linux"
  bin=${BIN_DIR:-.build/release}
  for b in weftd weftctl; do
    [ -x "$bin/$b" ] || { echo "build-image.sh: $bin/$b missing (swift build -c release)" >&2; exit 1; }
    cp "$bin/$b" "$out/usr/local/bin/"
  done
  # The Swift runtime libraries they link, at the path their RUNPATH names.
  ldd "$out/usr/local/bin/weftd" "$out/usr/local/bin/weftctl" \
    | awk '$2 == "=>" && $3 ~ "/lib/swift/linux/" {print $3}' | sort -u \
    | xargs -r cp -L -t "$out/opt/swift/usr/lib/swift/linux/"
  args+=(--build-arg ARTIFACTS=prebuilt --build-arg PROBE=noprobe)
else
  # Spelled out: buildah 1.28 resolves `FROM ${ARTIFACTS}` to a stage only when the
  # value comes from --build-arg, not from the ARG's default.
  args+=(--build-arg ARTIFACTS=build --build-arg PROBE=probe)
fi

echo "+ ${build[*]} ${args[*]} ."
"${build[@]}" "${args[@]}" .
