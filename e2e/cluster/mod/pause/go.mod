// The pod sandbox process of the local node (no dependencies). Built by e2e/cluster/build.sh.
module vsip.local/e2e/cluster/pause

go 1.26.0
