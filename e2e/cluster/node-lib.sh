# The local cluster's node: containerd, kubelet and kube-proxy on this machine, pods on a
# bridge in network namespaces of their own (sourced by up.sh and down.sh; docs/cluster.md).
#
# Everything the node makes on the machine is listed here, and down.sh (node_down) removes
# exactly that:
#   processes   containerd, kubelet, kube-proxy (pid files), containerd-shim-runc-v2 and the
#               pods' processes (found by the shims' address and the pods' cgroups)
#   $STATE/node containerd's root (images, snapshots), the kubelet's root dir, CNI config and
#               IPAM state, logs; mounts under it (overlay rootfs, tmpfs volumes, the kubelet's
#               rshared bind of its root dir)
#   $NODE_RUN   (/run/vsip-node) containerd's state: sockets, shim sockets, the pods' network
#               namespaces (netns_mounts_under_state_dir); it is also the machine's one node
#               slot (mkdir is the lock, its `owner` file names the state dir)
#   network     the bridge $NODE_BRIDGE and the pods' veths; iptables rules and chains of the
#               bridge plugin (CNI-*, masquerade) and of the kubelet (KUBE-FIREWALL,
#               KUBE-KUBELET-CANARY in ip and ip6 tables); nftables tables of kube-proxy
#               (ip/ip6 kube-proxy) and of iptables-nft, when they did not exist before
#   cgroups     /$NODE_CGROUP in every cgroup v1 hierarchy (and cgroup2's, when mounted): the
#               kubelet's cgroupRoot; its subtree (kubepods, ...)
#   sysctls     what the bridge plugin (ip_forward) and the kubelet (vm.overcommit_memory,
#               vm.panic_on_oom, kernel.panic, kernel.panic_on_oops, kernel.keys.*) set: the
#               values before up are restored
#   host dirs   /var/lib/cni (libcni's cache), /var/log/containers (the kubelet's symlinks):
#               removed when up created them
# Needs e2e/cluster/lib.sh (log, cluster_alive) sourced first.
# shellcheck shell=bash

NODE_NAME=vsip-node
NODE_RUN=/run/vsip-node
NODE_BRIDGE=vsip0
NODE_CGROUP=vsip-node
NODE_POD_CIDR="${VSIP_POD_CIDR:-10.244.0.0/24}"
NODE_CNI_NET=vsip-pods
PAUSE_IMAGE=localhost/vsip/pause:1
# The sysctls the node's parts write (bridge plugin, kubelet, kube-proxy); restored by down.
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv6.conf.all.forwarding vm.overcommit_memory vm.panic_on_oom
  kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.conf.all.route_localnet)
# Host directories the node's parts may create outside their configured dirs.
NODE_HOST_DIRS=(/var/lib/cni /var/log/containers /var/log/pods /run/containerd /opt/containerd
  /var/run/nri /etc/cni /opt/cni /usr/libexec/kubernetes /var/lib/kubelet /etc/kubernetes)

# The node's address: VSIP_NODE_IP, else the first IPv4 address of the default route's
# interface (the kubelet refuses a loopback node IP).
node_ip() {
  if [ -n "${VSIP_NODE_IP:-}" ]; then echo "$VSIP_NODE_IP"; return; fi
  local dev ip
  dev="$(ip -4 -o route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')"
  [ -n "$dev" ] || return 1
  ip="$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4}' | cut -d/ -f1 | head -n 1)"
  [ -n "$ip" ] && echo "$ip"
}

# Takes the machine's node slot for STATE (mkdir is atomic). A slot whose owner has no
# process left (a SIGKILLed run) is cleaned up and taken over.
node_claim() {
  local state="$1" owner
  mkdir -p "$(dirname "$NODE_RUN")"
  if ! mkdir "$NODE_RUN" 2>/dev/null; then
    owner="$(cat "$NODE_RUN/owner" 2>/dev/null || true)"
    if [ -n "$owner" ] && [ "$owner" != "$state" ] && cluster_alive "$owner"; then
      return 1
    fi
    log "the node slot $NODE_RUN is stale (owner: ${owner:-none}): cleaning it up"
    node_cleanup "${owner:-$state}"
    mkdir "$NODE_RUN" || return 1
  fi
  echo "$state" >"$NODE_RUN/owner"
}
node_owner_message() {
  echo "this machine already runs a cluster with a node ($(cat "$NODE_RUN/owner" 2>/dev/null)): one node per machine; stop it first (e2e/cluster/down.sh DIR)"
}

# ---------------------------------------------------------------------------------- up
# Called by up.sh once the control plane is ready (uses its STATE, PKI, sign, kubeconfig,
# start, wait_for, pick_port, KC, NODE_IP). Returns when the node is Ready.
node_up() {
  local nd="$STATE/node"
  mkdir -p "$nd"/{before,cni/net.d,cni/ipam,containerd,kubelet,kubelet-pki,pod-logs,volume-plugins,opt,images}
  node_record_before "$nd/before"

  # Certificates: the kubelet's client (Node authorizer) and serving certificate, kube-proxy.
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "$CLIENT_EXT"
  sign kubelet-serving "/CN=$NODE_NAME" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"
  sign kube-proxy "/CN=system:kube-proxy" "$CLIENT_EXT"
  kubeconfig kubelet.kubeconfig kubelet
  kubeconfig kube-proxy.kubeconfig kube-proxy

  # Pod network: one bridge, host-local IPAM with its state in the state dir, masquerade
  # of pod traffic leaving the pod network (as a cloud's CNI does), hostPorts by portmap.
  cat >"$nd/cni/net.d/10-$NODE_CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NODE_CNI_NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$nd/cni/ipam",
        "ranges": [[{ "subnet": "$NODE_POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF

  # containerd: root in the state dir, runtime state (sockets, netns) under $NODE_RUN,
  # nothing under /etc, /opt or /var/lib. restrict_oom_score_adj: this machine lacks
  # CAP_SYS_RESOURCE, so a negative oom_score_adj (the kubelet's for critical pods) cannot
  # be written and runc fails ("can't get final child's PID from pipe: EOF").
  local runc; runc="$(command -v runc)" || die "runc is not installed (scripts/install-deps.sh)"
  [ -x /usr/lib/cni/bridge ] || die "CNI plugins missing in /usr/lib/cni (scripts/install-deps.sh)"
  cat >"$nd/containerd.toml" <<EOF
version = 3
root = '$nd/containerd'
state = '$NODE_RUN/containerd'
imports = []
[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$NODE_RUN/containerd.sock'
  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$NODE_RUN/containerd.sock.ttrpc'
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$NODE_RUN/s'
  [plugins.'io.containerd.internal.v1.opt']
    path = '$nd/opt'
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = '$nd/opt/image-verifier'
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$nd/cni/net.d'
EOF
  # PATH: the shim is found next to containerd.
  PATH="$K8S_BIN:$PATH" start containerd "$K8S_BIN/containerd" --config "$nd/containerd.toml" --log-level warn
  CTR=("$K8S_BIN/ctr" --address "$NODE_RUN/containerd.sock" -n k8s.io)
  wait_for "containerd" "${CTR[@]}" version

  # Images: the pause image (built here), then vsip's (make image) or VSIP_NODE_IMAGES.
  node_pause_image "$nd/images/pause.tar"
  local images="${VSIP_NODE_IMAGES-}" img
  if [ -z "${VSIP_NODE_IMAGES+x}" ] && [ -f "$VSIP_CACHE/images/vsip.tar" ]; then
    images="$VSIP_CACHE/images/vsip.tar"
  fi
  for img in "$nd/images/pause.tar" $images; do
    "${CTR[@]}" images import --platform linux/amd64 "$img" >>"$STATE/logs/ctr-import.log" 2>&1 \
      || die "ctr images import $img failed (see $STATE/logs/ctr-import.log)"
    log "image imported: $img"
  done

  # The kubelet's cgroupRoot must exist in every hierarchy (cgroupfs driver). The host's
  # cgroup mounts are never changed: only a directory of ours is made in each.
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -d "$h" ] && mountpoint -q "$h" && mkdir -p "$h$NODE_CGROUP"
  done

  local kport hport
  kport="$(pick_port)"; hport="$(pick_port)"
  # failCgroupV1: false — this host mounts cgroup v1 (docs/cluster.md explains).
  cat >"$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://$NODE_RUN/containerd.sock
address: $NODE_IP
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
clusterDomain: cluster.local
podLogsDir: $nd/pod-logs
volumePluginDir: $nd/volume-plugins
staticPodPath: ""
failSwapOn: false
# A shared development disk: no eviction for disk use, no image garbage collection (the
# images are imported, not pulled: a collected one could not come back).
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: true
# Pods resync every 10 s (default 1 min): a changed Secret reaches its volumes sooner.
syncFrequency: 10s
EOF
  start kubelet "$K8S_BIN/kubelet" --config="$nd/kubelet.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --root-dir="$nd/kubelet" --cert-dir="$nd/kubelet-pki" --v=1

  local pport mport
  pport="$(pick_port)"; mport="$(pick_port)"
  # nftables mode; conntrack: 0 = leave the host's conntrack sysctls alone.
  cat >"$nd/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$pport
metricsBindAddress: 127.0.0.1:$mport
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$K8S_BIN/kube-proxy" --config="$nd/kube-proxy.yaml" --v=1

  node_ready() {
    [ "$("${KC[@]}" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
  }
  wait_for "node $NODE_NAME Ready" node_ready
  wait_for "kube-proxy /healthz" curl -fsS "http://127.0.0.1:$pport/healthz"
  cat >>"$STATE/cluster.env" <<EOF
NODE_NAME=$NODE_NAME
NODE_POD_CIDR=$NODE_POD_CIDR
CONTAINERD_ADDRESS=$NODE_RUN/containerd.sock
KUBELET_PORT=$kport
EOF
}

# The pause image as a docker-archive (one layer holding the static pause binary), built
# with tar and sha256sum: no image builder needed for it.
node_pause_image() {
  local out="$1" d; d="$(mktemp -d)"
  mkdir -p "$d/rootfs"
  cp "$K8S_BIN/pause" "$d/rootfs/pause"
  tar --numeric-owner --owner=0 --group=0 --mtime=@0 -C "$d/rootfs" -cf "$d/layer.tar" pause
  local diff cfg
  diff="$(sha256sum "$d/layer.tar" | cut -d' ' -f1)"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff" >"$d/config.json"
  cfg="$(sha256sum "$d/config.json" | cut -d' ' -f1)"
  mv "$d/config.json" "$d/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$cfg" "$PAUSE_IMAGE" >"$d/manifest.json"
  tar -C "$d" -cf "$out" manifest.json "$cfg.json" layer.tar
  rm -rf "$d"
}

# What down must restore or compare against: sysctls, host dirs that exist, iptables rules,
# nftables tables.
node_record_before() {
  local b="$1" s d
  for s in "${NODE_SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(cat "/proc/sys/${s//.//}")"
  done >"$b/sysctl"
  for d in "${NODE_HOST_DIRS[@]}"; do [ -e "$d" ] && echo "$d"; done >"$b/dirs"
  iptables-save 2>/dev/null | grep -E '^(\*|:|-A)' >"$b/iptables" || true
  ip6tables-save 2>/dev/null | grep -E '^(\*|:|-A)' >"$b/ip6tables" || true
  nft list tables 2>/dev/null >"$b/nft-tables" || true
}

# -------------------------------------------------------------------------------- down
# Removes everything node_up made, whatever state it is in (processes already stopped by
# down.sh, or a half-started node, or a stale slot of a killed run). Idempotent.
node_cleanup() {
  local state="$1" nd="$1/node" b="$1/node/before"
  # 1. Processes: the shims of our containerd and everything in our cgroups.
  local pid cmd
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $NODE_RUN/containerd.sock" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null
  done
  local procs f
  for f in /sys/fs/cgroup/*/"$NODE_CGROUP"; do
    [ -d "$f" ] || continue
    procs="$(find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)"
    for pid in $procs; do kill -KILL "$pid" 2>/dev/null; done
  done
  for pid in $(pgrep -f "$NODE_RUN/containerd.sock" 2>/dev/null); do
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
    case "$cmd" in *containerd*) kill -KILL "$pid" 2>/dev/null ;; esac
  done
  sleep 0.5
  # 2. Mounts under the state dir and the runtime dir, deepest first.
  local m
  for _ in 1 2 3; do
    m="$(awk -v a="$nd/" -v b="$NODE_RUN/" 'index($5, a) == 1 || index($5, b) == 1 || $5 == substr(a, 1, length(a) - 1) { print $5 }' /proc/self/mountinfo | sort -r)"
    [ -z "$m" ] && break
    while read -r f; do [ -n "$f" ] && umount -l "$f" 2>/dev/null; done <<<"$m"
  done
  # 3. Network: pod veths go with their namespaces; the bridge stays unless removed.
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE" 2>/dev/null
  node_iptables_restore iptables "$b/iptables"
  node_iptables_restore ip6tables "$b/ip6tables"
  # nftables: kube-proxy's tables; and the tables iptables-nft made for the rules above
  # when they did not exist before up and hold no rule now.
  local t
  while read -r t; do
    [ -n "$t" ] || continue
    grep -qxF "$t" "$b/nft-tables" 2>/dev/null && continue
    case "$t" in
      "table ip kube-proxy"|"table ip6 kube-proxy") ;;
      *) [ -f "$b/nft-tables" ] || continue
         # shellcheck disable=SC2086
         [ "$(nft -j list $t 2>/dev/null | jq '[.nftables[] | select(.rule)] | length')" = 0 ] || continue ;;
    esac
    # shellcheck disable=SC2086
    nft delete $t 2>/dev/null
  done < <(nft list tables 2>/dev/null)
  # 4. cgroups (deepest first), sysctls, host dirs, the runtime dir.
  for f in /sys/fs/cgroup/*/"$NODE_CGROUP"; do
    [ -d "$f" ] && find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  if [ -f "$b/sysctl" ]; then
    local kv
    while read -r kv; do
      [ -n "$kv" ] || continue
      f="/proc/sys/$(tr . / <<<"${kv%%=*}")"
      [ "$(cat "$f" 2>/dev/null)" = "${kv#*=}" ] || echo "${kv#*=}" >"$f" 2>/dev/null
    done <"$b/sysctl"
  fi
  if [ -f "$b/dirs" ]; then
    local d
    for d in "${NODE_HOST_DIRS[@]}"; do
      [ -e "$d" ] && ! grep -qxF "$d" "$b/dirs" && rm -rf "$d"
    done
  fi
  rm -rf "$NODE_RUN"
  rm -rf "$nd"
}

# node_iptables_restore iptables|ip6tables BEFORE: deletes the node's rules and chains (the
# kubelet's KUBE-*, the CNI plugins' CNI-* and rules commented with our network's name)
# that were not there before up. Without BEFORE (a stale slot), every such rule and chain.
node_iptables_restore() {
  local cmd="$1" before="$2" table="" line ours="KUBE-|CNI-|$NODE_CNI_NET"
  command -v "$cmd" >/dev/null || return 0
  [ -f "$before" ] || before=/dev/null
  local now; now="$("$cmd-save" 2>/dev/null | grep -E '^(\*|-A)')" || return 0
  while read -r line; do
    case "$line" in \**) table="${line#\*}"; continue ;; esac
    grep -qE -- "$ours" <<<"$line" || continue
    grep -qxF -- "$line" "$before" && continue
    eval "$cmd -w -t $table -D ${line#-A }" 2>/dev/null
  done <<<"$now"
  local chain
  "$cmd-save" 2>/dev/null | awk '/^\*/ { t = substr($0, 2) } /^:/ { print t, substr($1, 2) }' |
  while read -r table chain; do
    grep -qE -- "^($ours)" <<<"$chain" || continue
    grep -q -- "^:$chain " "$before" && continue
    "$cmd" -w -t "$table" -F "$chain" 2>/dev/null
    "$cmd" -w -t "$table" -X "$chain" 2>/dev/null
  done
}
