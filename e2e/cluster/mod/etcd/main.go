// Command etcd is the upstream etcd server, built from its Go module.
// go.etcd.io/etcd/server/v3 carries replace directives, so it cannot be
// `go install`ed; this wrapper main is identical to upstream's server/main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
