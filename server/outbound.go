package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// outbound is the helper that gives crib's network namespace a way out:
// slirp4netns (a user-mode TCP/IP stack on a tap device) or pasta.
type outbound struct {
	name string
	cmd  *exec.Cmd
	stop func()
}

// The addresses slirp4netns gives the namespace with --configure; pasta
// copies the host's instead, so these only hold for slirp4netns.
const (
	slirpDNS = "10.0.2.3"
)

const outboundReadyTimeout = 10 * time.Second

// startOutbound starts the configured helper for the namespaces of pid.
// "none" leaves crib's namespace with loopback only.
func startOutbound(ctx context.Context, mode string, pid int, log *slog.Logger) (*outbound, error) {
	none := &outbound{name: "none", stop: func() {}}
	switch mode {
	case "none":
		return none, nil
	case "slirp4netns":
		return startSlirp(pid, log)
	case "pasta":
		return startPasta(pid, log)
	}
	// auto: the first helper that is installed and starts.
	var errs []error
	for _, start := range []func(int, *slog.Logger) (*outbound, error){startSlirp, startPasta} {
		ob, err := start(pid, log)
		if err == nil {
			return ob, nil
		}
		errs = append(errs, err)
	}
	log.Warn("crib's namespace has no outbound network (pulls still work through the host dialer)", "err", errors.Join(errs...))
	return none, nil
}

func startSlirp(pid int, log *slog.Logger) (*outbound, error) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		return nil, fmt.Errorf("slirp4netns: %w", err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, err
	}
	cmd := exec.Command(path, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--ready-fd=3", "--exit-fd=4", strconv.Itoa(pid), "tap0")
	cmd.ExtraFiles = []*os.File{readyW, exitR}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		readyW.Close()
		exitR.Close()
		exitW.Close()
		return nil, fmt.Errorf("starting slirp4netns: %w", err)
	}
	readyW.Close()
	exitR.Close()
	ob := &outbound{name: "slirp4netns", cmd: cmd}
	ob.stop = func() {
		// Closing the exit fd asks slirp4netns to quit; a signal backs it up.
		exitW.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	if err := waitReadyByte(readyR); err != nil {
		ob.stop()
		return nil, fmt.Errorf("slirp4netns did not come up: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	log.Debug("outbound network up", "helper", "slirp4netns", "pid", cmd.Process.Pid)
	return ob, nil
}

func waitReadyByte(r *os.File) error {
	r.SetReadDeadline(time.Now().Add(outboundReadyTimeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return nil
}

// startPasta runs pasta against the child's namespaces. pasta forks into
// the background once the namespace is configured and quits by itself when
// the namespace goes away; the parent is a subreaper, so it reaps it.
func startPasta(pid int, log *slog.Logger) (*outbound, error) {
	path, err := exec.LookPath("pasta")
	if err != nil {
		return nil, fmt.Errorf("pasta: %w", err)
	}
	pidFile := filepath.Join(os.TempDir(), "crib-pasta-"+strconv.Itoa(pid)+".pid")
	cmd := exec.Command(path, "--config-net", "--quiet", "--pid", pidFile,
		"-t", "none", "-u", "none", "-T", "none", "-U", "none", strconv.Itoa(pid))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pasta: %w: %s", err, strings.TrimSpace(string(out)))
	}
	data, err := os.ReadFile(pidFile)
	os.Remove(pidFile)
	if err != nil {
		return nil, fmt.Errorf("pasta did not write its pid: %w", err)
	}
	helperPID, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("pasta pid file: %w", err)
	}
	log.Debug("outbound network up", "helper", "pasta", "pid", helperPID)
	return &outbound{name: "pasta", stop: func() {
		if p, err := os.FindProcess(helperPID); err == nil {
			p.Signal(syscall.SIGTERM)
			var ws syscall.WaitStatus
			// Reapable because the parent is a subreaper; ignore ECHILD.
			syscall.Wait4(helperPID, &ws, 0, nil)
		}
	}}, nil
}
