package main

import (
	"os"
	"os/signal"
	"syscall"
)

// runPause idles until asked to stop, like the Kubernetes pause container:
// SIGTERM or SIGINT end it with status 0, and as a possible PID 1 it reaps
// every child that is reparented to it.
func runPause() error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range sigs {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		os.Exit(0)
	}
	return nil
}

// reapChildren collects every exited child without blocking.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
