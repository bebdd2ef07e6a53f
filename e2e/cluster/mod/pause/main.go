// pause: the process of every pod sandbox on the local node. It holds the pod's namespaces
// open, reaps the orphans reparented to it (PID 1 of a shared PID namespace), and exits
// on SIGINT or SIGTERM, as Kubernetes' own pause (build/pause/linux/pause.c) does. Go rather
// than C so that it builds like the rest of e2e/cluster: from the Go toolchain, static.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
