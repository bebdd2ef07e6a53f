# Local Kubernetes cluster built from the official Go modules.
# See docs/cluster.md. Included by the top-level Makefile.
#   make cluster-build   build + cache etcd, kube-*, kubectl, helm, kubelet, kube-proxy,
#                        containerd, pause (idempotent)
#   make cluster-up      start a cluster with one Ready node that runs pods (the vsip image
#                        of `make image` imported); prints `export KUBECONFIG=...` last
#   make cluster-down    stop it (CLUSTER_STATE=dir to pick one; default: last)
#   make cluster-smoke   up, check CRD/CEL, SA token + RBAC, GC, down
CLUSTER_STATE ?=

.PHONY: cluster-build cluster-up cluster-down cluster-smoke
cluster-build:
	@bash e2e/cluster/build.sh

cluster-up: image
	@bash e2e/cluster/up.sh --node $(CLUSTER_STATE)

cluster-down:
	@bash e2e/cluster/down.sh $(CLUSTER_STATE)

cluster-smoke:
	@bash e2e/cluster/smoke.sh
