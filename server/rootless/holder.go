package rootless

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/procfs"
)

// The holder keeps crib's user, mount, network, PID and IPC namespaces
// (the node's) alive while crib itself is stopped, restarted or upgraded:
// pods' namespace pins live in that mount namespace and their veths on that network's bridge, so
// containers keep running and a new crib finds them where they were. It is
// a pause process (catatonit -P), started detached, in the manner of
// Podman's rootless pause process. slirp4netns serves it, not crib, and is
// detached the same way.
//
// Both are stopped when crib stops with no pod or container left, and a
// crib that finds them dead (a reboot, a kill) makes new ones.

const holderFileName = "holder.json"

type Holder struct {
	PID        int    `json:"pid"`
	StartTime  uint64 `json:"startTime"`
	Outbound   string `json:"outbound"`
	HelperPID  int    `json:"helperPid,omitempty"`
	HelperTime uint64 `json:"helperStartTime,omitempty"`
}

func holderPath(runRoot string) string { return filepath.Join(runRoot, holderFileName) }

func loadHolder(runRoot string) (Holder, bool) {
	var h Holder
	data, err := os.ReadFile(holderPath(runRoot))
	if err != nil || json.Unmarshal(data, &h) != nil {
		return h, false
	}
	return h, h.PID > 0 && processStartTime(h.PID) == h.StartTime && inOtherUserNS(h.PID)
}

func saveHolder(runRoot string, h Holder) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	tmp := holderPath(runRoot) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, holderPath(runRoot))
}

// processStartTime is the start time of /proc/PID/stat, which tells a
// live process from a later one that reused its pid; 0 when it is gone or
// a zombie.
func processStartTime(pid int) uint64 {
	t, _ := procfs.StartTime(pid)
	return t
}

func inOtherUserNS(pid int) bool {
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return false
	}
	ours, _ := os.Readlink("/proc/self/ns/user")
	return theirs != ours
}

// ensureHolder returns a live holder, reusing the one a previous crib left
// or starting a new one with its id maps and outbound network.
func ensureHolder(runRoot, outboundMode string, uidArgs, gidArgs func(int) []string, log *slog.Logger) (Holder, error) {
	if h, ok := loadHolder(runRoot); ok {
		if h.HelperPID == 0 || processStartTime(h.HelperPID) == h.HelperTime {
			log.Info("rejoining crib's namespaces", "holder", h.PID, "outbound", h.Outbound)
			return h, nil
		}
		// The namespaces survived but their way out died: give them a new one.
		log.Warn("the outbound helper is gone; starting another", "holder", h.PID)
		h.Outbound, h.HelperPID, h.HelperTime = startDetachedOutbound(outboundMode, h.PID, log)
		return h, saveHolder(runRoot, h)
	}
	os.Remove(holderPath(runRoot))
	pid, err := startHolder()
	if err != nil {
		return Holder{}, err
	}
	h := Holder{PID: pid, StartTime: processStartTime(pid)}
	if err := writeIDMaps(pid, uidArgs, gidArgs); err != nil {
		stopPID(pid, h.StartTime)
		return Holder{}, err
	}
	h.Outbound, h.HelperPID, h.HelperTime = startDetachedOutbound(outboundMode, pid, log)
	if err := saveHolder(runRoot, h); err != nil {
		stopHolder(h)
		return Holder{}, err
	}
	log.Info("created crib's namespaces", "holder", pid, "outbound", h.Outbound)
	return h, nil
}

// startHolder starts the pause process in new user, mount, network, PID
// and IPC namespaces, detached from crib so that it outlives it.
func startHolder() (int, error) {
	path, err := exec.LookPath("catatonit")
	if err != nil {
		return 0, fmt.Errorf("catatonit holds crib's namespaces and is missing: %w (apt-get install catatonit)", err)
	}
	cmd := exec.Command(path, "-P")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// It is PID 1 of the node's PID namespace (node.go), reaping
		// what is orphaned there; the namespace, and every process in it,
		// ends with it.
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID | unix.CLONE_NEWIPC,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the namespace holder: %w", err)
	}
	// Not waited for: the holder outlives crib. crib's parent is a
	// subreaper and reaps it if it dies first.
	go cmd.Wait()
	return cmd.Process.Pid, nil
}

// startDetachedOutbound gives the holder's network namespace a way out
// that lives as long as the namespace, not as long as crib.
func startDetachedOutbound(mode string, pid int, log *slog.Logger) (string, int, uint64) {
	try := []string{mode}
	if mode == "auto" {
		try = []string{"slirp4netns", "pasta"}
	}
	for _, name := range try {
		var helper int
		var err error
		switch name {
		case "none":
			return "none", 0, 0
		case "slirp4netns":
			helper, err = startSlirpDetached(pid)
		case "pasta":
			helper, err = startPastaDetached(pid)
		}
		if err == nil {
			return name, helper, processStartTime(helper)
		}
		log.Warn("outbound helper failed", "helper", name, "err", err)
	}
	log.Warn("crib's namespace has no outbound network (pulls still work through the host dialer)")
	return "none", 0, 0
}

func startSlirpDetached(pid int) (int, error) {
	path, err := exec.LookPath("slirp4netns")
	if err != nil {
		return 0, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer readyR.Close()
	cmd := exec.Command(path, "--configure", "--mtu=65520", "--disable-host-loopback",
		"--ready-fd=3", strconv.Itoa(pid), "tap0")
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return 0, err
	}
	readyW.Close()
	go cmd.Wait()
	if err := waitReadyByte(readyR); err != nil {
		cmd.Process.Kill()
		return 0, fmt.Errorf("slirp4netns did not come up: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return cmd.Process.Pid, nil
}

func startPastaDetached(pid int) (int, error) {
	return startPastaProcess(pid)
}

// stopHolder ends the holder and its outbound helper; the namespaces go
// with the last process in them.
func stopHolder(h Holder) {
	if h.HelperPID != 0 {
		stopPID(h.HelperPID, h.HelperTime)
	}
	stopPID(h.PID, h.StartTime)
}

func stopPID(pid int, start uint64) {
	if processStartTime(pid) != start {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(2 * time.Second)
	for processStartTime(pid) == start && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if processStartTime(pid) == start {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// idleMarkerName is written by the daemon when it stops with no pod and no
// container: the parent then stops the holder too.
const idleMarkerName = "idle"

func releaseHolderIfIdle(root, runRoot string, log *slog.Logger) {
	marker := filepath.Join(runRoot, idleMarkerName)
	_, err := os.Stat(marker)
	idle := err == nil || !hasRecords(root)
	if !idle {
		log.Info("pods remain: crib's namespaces stay up for them")
		return
	}
	os.Remove(marker)
	if h, ok := loadHolder(runRoot); ok {
		stopHolder(h)
	}
	os.Remove(holderPath(runRoot))
}

// hasRecords reports whether any pod or container record exists: a
// daemon that failed before it could write the idle marker leaves the
// decision to this look at the durable state.
func hasRecords(root string) bool {
	for _, dir := range []string{"sandboxes", "containers"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err == nil && len(entries) > 0 {
			return true
		}
	}
	return false
}
