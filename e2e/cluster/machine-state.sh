#!/usr/bin/env bash
# Prints what a cluster with a node may leave behind on this machine, one fact a line, in a
# stable order, so that two snapshots can be compared with diff (e2e/node-check.sh: before
# `up` and after `down` they must be equal):
#   network namespaces, links, addresses and routes; iptables/ip6tables rules and chains;
#   nftables tables; mount points; cgroup directories (two levels); the sysctls the node's
#   parts write; host directories they may create; processes of the node's programs.
#
#   e2e/cluster/machine-state.sh >before.txt
# Other clusters' control planes (etcd, kube-apiserver, ... of other runs) are not listed:
# only the node's programs, which run once per machine.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=node-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-lib.sh"

section() { printf '## %s\n' "$1"; }
section netns;   { ip netns list 2>/dev/null | awk '{print $1}'; ls /run/netns /var/run/netns 2>/dev/null; } | sort -u
section links;   ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
section addrs;   ip -o addr show | awk '{print $2, $3, $4}' | sort
section routes;  { ip -4 route show table all; ip -6 route show table all; } 2>/dev/null | grep -v '^local\|^broadcast\|^multicast\|^anycast\| proto kernel .* fe80::' | sort
for t in iptables ip6tables; do
  section "$t"
  # "TABLE RULE" and "TABLE :CHAIN POLICY", counters dropped.
  command -v "$t-save" >/dev/null && "$t-save" 2>/dev/null \
    | awk '/^\*/ { t = substr($0, 2); next } /^(:|-A)/ { sub(/ \[[0-9]*:[0-9]*\]$/, ""); print t, $0 }' | sort
done
section nft;     nft list tables 2>/dev/null | sort
section mounts;  awk '{print $5, $9}' /proc/self/mountinfo | sort
section cgroups; find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort
section sysctls
for s in "${NODE_SYSCTLS[@]}"; do
  f="/proc/sys/${s//.//}"; [ -e "$f" ] && echo "$s=$(cat "$f")"
done
section dirs;    for d in "${NODE_HOST_DIRS[@]}" "$NODE_RUN"; do [ -e "$d" ] && echo "$d"; done
section processes
ps -eo comm= | grep -xE 'containerd|containerd-shim|containerd-shim-runc-v2|kubelet|kube-proxy|pause|runc' | sort
