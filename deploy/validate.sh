#!/usr/bin/env bash
# Validate Weft's Kubernetes manifests without a cluster:
#   1. every resource file a kustomization lists, against the Kubernetes JSON schemas
#      (kubernetes-validate from PyPI, strict: unknown fields are errors), for each
#      version in KUBE_VERSIONS;
#   2. every kustomization rendered (kubectl kustomize, or kustomize build) and the
#      result validated the same way;
#   3. forwarder.yaml's probes against its env: they dial NSM_LISTEN_ON, and -spiffe
#      probes have SPIFFE_ENDPOINT_SOCKET set, on a mounted path; then every weft.yaml
#      with `weftd validate` and the DaemonSet's variables (if a weftd binary is found);
#   4. with NSM_DEPLOYMENTS_K8S=<a networkservicemesh/deployments-k8s checkout>: the
#      nsm-examples overlays rendered inside a copy of it, validated, and checked to
#      hold forwarder-weft and no forwarder-vpp.
# Usage: deploy/validate.sh [K8S_DIR]   (default: deploy/k8s). Exits 1 on any error.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/k8s}
dir=$(cd "$dir" && pwd) || exit 1
versions=${KUBE_VERSIONS:-1.28.0 1.37.0}
validator_version=1.37.0
errors=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; errors=$((errors + 1)); }

# The validator (PyPI).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing kubernetes-validate==$validator_version (pip)"
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$validator_version" \
    || { echo "FAIL: cannot install kubernetes-validate"; exit 1; }
fi

validate() { # FILE LABEL
  local v out
  for v in $versions; do
    if ! out=$(kubernetes-validate --strict --quiet -k "$v" "$1" 2>&1); then
      fail "$2 (Kubernetes $v):"; echo "$out" | sed 's/^/    /'
    elif [ -n "$out" ]; then
      echo "$out" | sed 's/^/    /'
    fi
  done
  [ "$errors" -eq "${3:-$errors}" ] && echo "ok: $2 (Kubernetes ${versions// /, })"
}

render() { # KUSTOMIZATION_DIR OUT
  if command -v kubectl >/dev/null 2>&1; then kubectl kustomize "$1" > "$2"
  elif command -v kustomize >/dev/null 2>&1; then kustomize build "$1" > "$2"
  else return 127
  fi
}

# Resource files each kustomization lists (not patches, not generator inputs).
resources_of() { # KUSTOMIZATION_DIR
  python3 - "$1" <<'EOF'
import os, sys, yaml
d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml"))) or {}
for r in k.get("resources", []) or []:
    p = os.path.join(d, r)
    if os.path.isfile(p):
        print(p)
EOF
}

mapfile -t kdirs < <(find "$dir" -name kustomization.yaml -printf '%h\n' | sort)
[ ${#kdirs[@]} -gt 0 ] || fail "no kustomization.yaml under $dir"
rendered=0
for k in "${kdirs[@]}"; do
  rel=${k#"$dir"/}
  case "$rel" in nsm-examples/*) continue ;; esac   # need NSM's tree: step 4
  while read -r f; do
    [ -n "$f" ] || continue
    before=$errors; validate "$f" "${f#"$dir"/}" "$before"
  done < <(resources_of "$k")
  out="$work/$(echo "$rel" | tr / _).yaml"
  render "$k" "$out" 2> "$work/render.err"; rc=$?
  if [ $rc -eq 127 ]; then
    echo "SKIP: no kubectl or kustomize: $rel not rendered (kustomize rendering not checked)"
  elif [ $rc -ne 0 ]; then
    fail "kustomize $rel:"; sed 's/^/    /' "$work/render.err"
  else
    rendered=$((rendered + 1))
    before=$errors; validate "$out" "kustomize $rel ($(grep -c '^kind:' "$out") resources)" "$before"
  fi
done

# The DaemonSet against itself: the probes dial NSM_LISTEN_ON; -spiffe probes have
# SPIFFE_ENDPOINT_SOCKET in the container's env, on a mounted path.
for f in "$dir"/forwarder-weft/forwarder.yaml; do
  [ -f "$f" ] || continue
  if out=$(python3 - "$f" <<'PYEOF'
import sys, yaml
bad = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if not doc or doc.get("kind") != "DaemonSet":
        continue
    for c in doc["spec"]["template"]["spec"]["containers"]:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        listen = (env.get("NSM_LISTEN_ON") or "").split(",")[0]
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            cmd = ((c.get(probe) or {}).get("exec") or {}).get("command") or []
            if not cmd:
                bad.append(f"{c['name']}: no {probe}")
                continue
            addr = next((a[len("-addr="):] for a in cmd if a.startswith("-addr=")), None)
            if addr != listen:
                bad.append(f"{c['name']}: {probe} dials {addr}, NSM_LISTEN_ON is {listen}")
            if "-spiffe" in cmd:
                sock = env.get("SPIFFE_ENDPOINT_SOCKET") or ""
                if not sock.startswith("unix://"):
                    bad.append(f"{c['name']}: {probe} uses -spiffe without SPIFFE_ENDPOINT_SOCKET in env")
                elif not any(sock[len("unix://"):].startswith(m.rstrip("/") + "/") for m in mounts):
                    bad.append(f"{c['name']}: {probe}: {sock} is not under a volumeMount")
print("\n".join(bad))
sys.exit(1 if bad else 0)
PYEOF
  ); then
    echo "ok: ${f#"$dir"/}: probes dial NSM_LISTEN_ON; -spiffe with SPIFFE_ENDPOINT_SOCKET set and mounted"
  else
    fail "${f#"$dir"/}:"; echo "$out" | sed 's/^/    /'
  fi
done

# weftd's own check of each configuration (with the variables the DaemonSet sets).
# WEFTD=<path>, else the newest of .build/{release,debug}/weftd and weftd on PATH (a
# stale release build would not know the keys the current sources accept).
weftd=${WEFTD:-}
if [ -z "$weftd" ]; then
  for c in "$here/../.build/release/weftd" "$here/../.build/debug/weftd" "$(command -v weftd 2>/dev/null)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    { [ -z "$weftd" ] || [ "$c" -nt "$weftd" ]; } && weftd=$c
  done
fi
if [ -n "$weftd" ]; then
  echo "weftd: $(cd "$(dirname "$weftd")" && pwd)/$(basename "$weftd") ($(date -r "$weftd" -u '+%Y-%m-%d %H:%M UTC'))"
  while read -r f; do
    if out=$(NSM_NAME=forwarder-weft-x1 NSM_TUNNEL_IP=172.18.0.2 NSM_LOG_LEVEL=INFO NSM_MAX_TOKEN_LIFETIME=10m \
             NSM_DIAL_TIMEOUT=750ms NSM_LISTEN_ON=unix:///listen.on.sock \
             NSM_CONNECT_TO=unix:///var/lib/networkservicemesh/nsm.io.sock \
             SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/agent.sock "$weftd" validate --config "$f" 2>&1); then
      echo "ok: weftd validate ${f#"$dir"/}"
    else
      fail "weftd validate ${f#"$dir"/}:"; echo "$out" | sed 's/^/    /'
    fi
  done < <(find "$dir" -name weft.yaml | sort)
else
  echo "SKIP: no weftd binary (swift build -c release): weft.yaml files not checked"
fi

# NSM's examples with Weft swapped in.
if [ -n "${NSM_DEPLOYMENTS_K8S:-}" ]; then
  nsm="$work/deployments-k8s"
  mkdir -p "$nsm/examples"
  cp -r "$NSM_DEPLOYMENTS_K8S/apps" "$nsm/"
  for e in "$dir"/nsm-examples/*/; do
    name=$(basename "$e")
    base=${name%-weft}
    cp -r "$NSM_DEPLOYMENTS_K8S/examples/$base" "$nsm/examples/" 2>/dev/null || { fail "no examples/$base in $NSM_DEPLOYMENTS_K8S"; continue; }
    rm -rf "$nsm/apps/forwarder-weft"; cp -r "$dir/forwarder-weft" "$nsm/apps/"
    cp -r "$e" "$nsm/examples/$name"
    out="$work/nsm-$name.yaml"
    if render "$nsm/examples/$name" "$out" 2> "$work/render.err"; then
      before=$errors
      grep -q '^  name: forwarder-weft$' "$out" || fail "nsm-examples/$name: no forwarder-weft in the render"
      ! grep -q 'forwarder-vpp' "$out" || fail "nsm-examples/$name: forwarder-vpp still in the render"
      validate "$out" "kustomize nsm-examples/$name inside deployments-k8s ($(grep -c '^kind:' "$out") resources)" "$before"
    else
      fail "kustomize nsm-examples/$name:"; sed 's/^/    /' "$work/render.err"
    fi
  done
else
  echo "SKIP: NSM_DEPLOYMENTS_K8S not set: nsm-examples overlays not rendered"
fi

if [ "$errors" -gt 0 ]; then
  echo "validate.sh: $errors error(s)"
  exit 1
fi
echo "validate.sh: all checks passed ($rendered kustomization(s) rendered)"
