#!/usr/bin/env bash
# edgelb end to end on kind: a real cluster, edgelb deployed from deploy/, an edge container
# with sshd + HAProxy, Traefik trusting PROXY protocol, and a request whose client address
# must arrive intact. See tests/kind/README.md.
#
# Exit codes: 0 passed, 1 failed, 77 skipped (a prerequisite is missing).
#
# Environment:
#   EDGELB_KIND_CLUSTER  cluster name (default edgelb-kind)
#   EDGELB_KIND_KEEP=1   keep the cluster and the edge container afterwards (for debugging)
#   EDGELB_KIND_IMAGE    use this controller image (already in the local Docker engine, any
#                        reference: name, name:tag, registry:port/name:tag, name@sha256:…)
#                        instead of building one from the Dockerfile
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster="${EDGELB_KIND_CLUSTER:-edgelb-kind}"
edge="${cluster}-edge"
edge_image="edgelb-kind-edge:latest"
image="${EDGELB_KIND_IMAGE:-edgelb:kind}"
curl_image="docker.io/curlimages/curl:8.10.1"

skip() { echo "SKIP: $*" >&2; exit 77; }
step() { echo "==> $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# shellcheck source=tests/kind/lib.sh
. "$here/lib.sh"

for tool in docker kind kubectl ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed"
done
docker info >/dev/null 2>&1 || skip "no Docker engine answers (docker info failed)"
if [ -n "${EDGELB_KIND_IMAGE:-}" ]; then
  docker image inspect "$image" >/dev/null 2>&1 \
    || skip "EDGELB_KIND_IMAGE=$image is not in the local Docker engine (docker pull or build it first)"
else
  docker buildx version >/dev/null 2>&1 \
    || skip "BuildKit (docker buildx) is missing: the Dockerfile's cache mounts need it"
fi
# A cluster or edge left by EDGELB_KIND_KEEP=1 is someone's: neither reused nor deleted.
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  fail "kind cluster $cluster exists (kept by an earlier EDGELB_KIND_KEEP=1 run?): delete it with 'kind delete cluster --name $cluster', or set EDGELB_KIND_CLUSTER"
fi
if docker container inspect "$edge" >/dev/null 2>&1; then
  fail "container $edge exists (kept by an earlier run?): remove it with 'docker rm -f $edge', or set EDGELB_KIND_CLUSTER"
fi

work="$(mktemp -d)"
created=0
cleanup() {
  status=$?
  if [ "$created" = 1 ] && [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then
    echo "--- edgelb logs (every pod)" >&2
    kubectl --context "kind-$cluster" -n edgelb logs -l app.kubernetes.io/name=edgelb \
      --prefix --all-containers --tail=200 >&2 || true
    echo "--- edge container" >&2
    docker logs --tail 100 "$edge" >&2 || true
    echo "--- edge haproxy.cfg" >&2
    docker exec "$edge" cat /etc/haproxy/haproxy.cfg >&2 || true
  fi
  if [ "$created" = 1 ]; then
    if [ "${EDGELB_KIND_KEEP:-0}" != 1 ]; then
      docker rm -f "$edge" >/dev/null 2>&1 || true
      kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    else
      echo "kept: kind cluster $cluster (kubectl --context kind-$cluster), container $edge" >&2
    fi
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

if [ -z "${EDGELB_KIND_IMAGE:-}" ]; then
  step "building the controller image $image"
  DOCKER_BUILDKIT=1 docker build -t "$image" "$root"
fi

step "creating kind cluster $cluster"
created=1
kind create cluster --name "$cluster" --wait 180s
kctl() { kubectl --context "kind-$cluster" "$@"; }
kind load docker-image "$image" --name "$cluster"

step "starting the edge container $edge"
docker build -q -t "$edge_image" "$here/edge" >/dev/null
ssh-keygen -q -t ed25519 -N '' -C edgelb-kind -f "$work/id_ed25519"
node_ip="$(docker inspect -f '{{.NetworkSettings.Networks.kind.IPAddress}}' "$cluster-control-plane")"
pod_cidr="$(kctl get node "$cluster-control-plane" -o jsonpath='{.spec.podCIDR}')"
docker run -d --name "$edge" --network kind --cap-add NET_ADMIN \
  -e AUTHORIZED_KEY="$(cat "$work/id_ed25519.pub")" \
  -e POD_CIDR="$pod_cidr" -e POD_GATEWAY="$node_ip" \
  "$edge_image" >/dev/null
edge_ip="$(docker inspect -f '{{.NetworkSettings.Networks.kind.IPAddress}}' "$edge")"
edge_up=0
for _ in $(seq 1 50); do
  if docker exec "$edge" test -S /run/haproxy/admin.sock 2>/dev/null \
    && docker exec "$edge" test -f /run/sshd.pid 2>/dev/null; then
    edge_up=1
    break
  fi
  sleep 0.2
done
[ "$edge_up" = 1 ] || fail "the edge container $edge did not start HAProxy and sshd within 10 s"
host_key="$(docker exec "$edge" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)"
echo "$edge_ip $host_key" > "$work/known_hosts"

step "installing Traefik (trusting PROXY protocol) and the whoami backend"
kctl apply -f "$here/manifests/traefik.yaml" -f "$here/manifests/whoami.yaml" >/dev/null
kctl -n traefik rollout status deploy/traefik --timeout=180s
kctl -n whoami rollout status deploy/whoami --timeout=180s

step "deploying edgelb from deploy/ (edge $edge_ip)"
kctl apply -f "$root/deploy/namespace.yaml" >/dev/null
kctl -n edgelb create secret generic edgelb-ssh \
  --from-file=id_ed25519="$work/id_ed25519" --from-file=known_hosts="$work/known_hosts"
mkdir -p "$work/overlay"
cat > "$work/overlay/config.yaml" <<CONFIG
source:
  kubernetes:
    load_balancer:
      class: edgelb.io/haproxy
leader_election:
  lease: edgelb-leader
edges:
  - name: edge-1
    ssh: {host: $edge_ip, port: 22, user: root}
    public_addresses: [$edge_ip]
deployer:
  ssh:
    key: /etc/edgelb/ssh/id_ed25519
    known_hosts: /etc/edgelb/ssh/known_hosts
http:
  listen: 0.0.0.0:9090
CONFIG
# kustomize takes bases by relative path only.
base="$(realpath --relative-to="$work/overlay" "$root/deploy" 2>/dev/null \
  || python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$root/deploy" "$work/overlay")"
cat > "$work/overlay/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $base
images:
  - name: ghcr.io/edgelb/edgelb
$(image_fields "$image")
configMapGenerator:
  - name: edgelb-config
    namespace: edgelb
    behavior: replace
    files:
      - config.yaml
generatorOptions:
  disableNameSuffixHash: true
KUSTOMIZATION
kctl apply -k "$work/overlay" >/dev/null
kctl -n edgelb rollout status deploy/edgelb --timeout=180s

step "waiting for the Service status (ingress $edge_ip, ipMode Proxy)"
ok=0
for _ in $(seq 1 90); do
  got="$(kctl -n traefik get svc traefik -o jsonpath='{.status.loadBalancer.ingress[0].ip} {.status.loadBalancer.ingress[0].ipMode}')"
  if [ "$got" = "$edge_ip Proxy" ]; then ok=1; break; fi
  sleep 2
done
[ "$ok" = 1 ] || fail "Service traefik/traefik status is '$got', expected '$edge_ip Proxy'"
kctl -n traefik get events --field-selector involvedObject.name=traefik >&2 || true

step "sending a request through the edge"
out=""
for _ in $(seq 1 30); do
  out="$(docker run --rm --network kind "$curl_image" sh -c \
    "echo \"client: \$(hostname -i)\"; curl -fsS --max-time 5 http://$edge_ip/whoami" 2>&1)" && break
  sleep 2
done
echo "$out" >&2
client_ips="$(echo "$out" | sed -n 's/^client: //p')"
real_ip="$(echo "$out" | tr -d '\r' | sed -n 's/^X-Real-Ip: //p')"
[ -n "$real_ip" ] || fail "no X-Real-Ip in the backend's answer"
[ "$real_ip" != "$edge_ip" ] || fail "the backend saw the edge's address $edge_ip: PROXY protocol was not used"
case " $client_ips " in
  *" $real_ip "*) ;;
  *) fail "the backend saw $real_ip, the client was $client_ips" ;;
esac
step "PASS: the request arrived with the client's address $real_ip"
