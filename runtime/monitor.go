package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// The monitor is conmon 2.1 (the one CRI-O and Podman use). Facts from its
// source that crib relies on:
//   - It double-forks: the process crib starts exits at once after writing
//     the monitor's pid to the -P file; the monitor is then an orphan that
//     crib, a child subreaper, adopts.
//   - It runs `runtime create` and, with --api-version 1, writes one JSON
//     line {"data": PID} to the fd named by _OCI_SYNCPIPE, or {"data": -1,
//     "message": runtime's stderr} when create failed (nothing at all when
//     the runtime failed silently: the pipe just closes).
//   - When the container exits it writes the exit status (128+signal for
//     a signal) to <exit-dir>/<id> and <persist-dir>/exit, through a
//     temporary file and a rename, and an "oom" file in the persist dir
//     when the cgroup reported an OOM kill.
//   - It reads "TYPE HEIGHT WIDTH\n" lines on the fifo <bundle>/ctl; type 1
//     resizes the container's pty, type 2 reopens the k8s log file (it
//     creates a new file at the log path).
//   - Attach: <socket-dir-path>/<id> is a symlink to the bundle and
//     <bundle>/attach a SOCK_SEQPACKET socket. Each packet conmon sends is
//     one read of the container's output, its first byte the stream (2
//     stdout, 3 stderr: conmon's stdpipe_t, 1 being stdin; a pty's output
//     is stdout); each packet a client
//     sends goes to the container's stdin (with --stdin), read into a 32 KiB
//     buffer. A client that shuts its write side closes the container's
//     stdin unless --leave-stdin-open.
//   - --log-path takes DRIVER:PATH; paths are cut at the first ':' after
//     the driver.

// monitorFiles are the paths of one container's monitor.
type monitorFiles struct {
	bundle     string // also the persist dir
	pidFile    string // container init pid, written by the runtime
	monitorPid string // conmon's own pid
	exitFile   string // <exit-dir>/<id>
	attachLink string // <socket-dir-path>/<id>, conmon's link to the bundle
}

func (m *Manager) files(id string) monitorFiles {
	bundle := filepath.Join(m.runRoot, "containers", id)
	return monitorFiles{
		bundle:     bundle,
		pidFile:    filepath.Join(bundle, "pidfile"),
		monitorPid: filepath.Join(bundle, "conmon.pid"),
		exitFile:   filepath.Join(m.exitDir, id),
		attachLink: filepath.Join(m.attachDir, id),
	}
}

// removeOutside removes what the monitor left outside the bundle: the
// exit file and the attach link (conmon never removes either; a node
// that churns containers would pile them up by the thousand).
func (f monitorFiles) removeOutside() error {
	for _, p := range []string{f.exitFile, f.attachLink} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// monitorRequest is what startMonitor needs for one container.
type monitorRequest struct {
	id, name string
	logPath  string
	rt       ociRuntime
	files    monitorFiles
	// stdio is how the container's stdin and terminal are set up.
	stdio monitorStdio
}

// monitorStdio: tty makes conmon allocate the container's pty (through
// the runtime's console socket); stdin keeps a pipe to the container's
// stdin that attach clients write to; stdinOnce closes it when the first
// attach client closes its stdin (otherwise it stays open for the next).
type monitorStdio struct {
	tty, stdin, stdinOnce bool
}

// monitorStarted is what the monitor reported.
type monitorStarted struct {
	pid        int // the container's init
	monitorPid int
}

// syncMessage is conmon's report on the sync pipe.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message"`
}

func (m *Manager) monitorArgs(req monitorRequest) []string {
	logPath := "none:"
	if req.logPath != "" {
		logPath = "k8s-file:" + req.logPath
	}
	args := []string{
		"--api-version", "1",
		"-c", req.id, "-u", req.id, "-n", req.name,
		"-r", req.rt.h.Path,
		"-b", req.files.bundle,
		"-p", req.files.pidFile,
		"-P", req.files.monitorPid,
		"-l", logPath,
		"--exit-dir", m.exitDir,
		"--persist-dir", req.files.bundle,
		"--socket-dir-path", m.attachDir,
		"--log-level", "warn",
	}
	for _, a := range req.rt.globalArgs() {
		args = append(args, "--runtime-arg", a)
	}
	if req.rt.h.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if req.stdio.tty {
		args = append(args, "--terminal")
	}
	if req.stdio.stdin {
		args = append(args, "--stdin")
		if !req.stdio.stdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	return args
}

// startMonitor starts conmon, which creates (not starts) the container,
// and waits until it reports the container's pid. On failure it leaves no
// monitor behind; the caller removes the runtime state and the bundle.
func (m *Manager) startMonitor(ctx context.Context, req monitorRequest) (monitorStarted, error) {
	parentEnd, childEnd, err := os.Pipe()
	if err != nil {
		return monitorStarted{}, fmt.Errorf("monitor sync pipe: %w", err)
	}
	defer parentEnd.Close()
	cmd := exec.Command(m.conmon, m.monitorArgs(req)...)
	cmd.Dir = req.files.bundle
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Env = append(os.Environ(), "_OCI_SYNCPIPE=3")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.WaitDelay = 2 * time.Second
	// Its own session, so a signal to crib's process group (a ^C at a
	// terminal) does not reach the monitors.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = m.reaper.Run(cmd)
	childEnd.Close()
	if err != nil {
		return monitorStarted{}, fmt.Errorf("starting conmon for container %s: %w: %s", req.id, err, strings.TrimSpace(stderr.String()))
	}
	started := monitorStarted{monitorPid: readPidFile(req.files.monitorPid)}
	msg, err := readSyncMessage(ctx, parentEnd)
	if err != nil {
		m.killMonitor(started.monitorPid, req.id)
		return monitorStarted{}, fmt.Errorf("container %s: %w", req.id, err)
	}
	if msg.Data <= 0 {
		m.killMonitor(started.monitorPid, req.id)
		return monitorStarted{}, fmt.Errorf("%s create of container %s failed: %s", req.rt.h.Name, req.id, strings.TrimSpace(msg.Message))
	}
	started.pid = msg.Data
	return started, nil
}

// readSyncMessage reads conmon's one-line report, giving up when ctx ends.
func readSyncMessage(ctx context.Context, r *os.File) (syncMessage, error) {
	type result struct {
		msg syncMessage
		err error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadBytes('\n')
		if err != nil && len(line) == 0 {
			done <- result{err: errors.New("conmon exited without reporting the container's pid (the OCI runtime failed without a message)")}
			return
		}
		var msg syncMessage
		if err := json.Unmarshal(line, &msg); err != nil {
			done <- result{err: fmt.Errorf("conmon's report %q: %w", line, err)}
			return
		}
		done <- result{msg: msg}
	}()
	select {
	case res := <-done:
		return res.msg, res.err
	case <-ctx.Done():
		r.Close() // unblocks the reader
		return syncMessage{}, fmt.Errorf("waiting for conmon to create the container: %w", ctx.Err())
	}
}

// killMonitor kills a monitor crib started for id; the pid is checked to
// still be that conmon, so a recycled pid is never signalled.
func (m *Manager) killMonitor(pid int, id string) {
	if isMonitorOf(pid, id) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		m.reaper.Kick()
	}
}

// isMonitorOf reports whether pid is a live conmon monitoring id.
func isMonitorOf(pid int, id string) bool {
	if !processAlive(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "conmon") {
		return false
	}
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "-c" || args[i] == "--cid") && args[i+1] == id {
			return true
		}
	}
	return false
}

func readPidFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// reopenLogMessage is conmon's ctl message 2 (REOPEN_LOGS_EVENT); conmon
// wants three numbers on the line.
const reopenLogMessage = "2 0 0\n"

// sendMonitorControl writes one control line to the monitor's ctl fifo.
// A monitor that is gone leaves a fifo with no reader: opening it
// non-blocking for writing then fails with ENXIO.
func sendMonitorControl(bundle, line string) error {
	f, err := os.OpenFile(filepath.Join(bundle, "ctl"), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ENXIO) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: the container's monitor is not running", errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("opening the monitor's control fifo: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("writing to the monitor's control fifo: %w", err)
	}
	return nil
}

// readExitFile reads the exit status conmon wrote and when it wrote it.
func readExitFile(path string) (code int32, at time.Time, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, time.Time{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, time.Time{}, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("exit file %s: %w", path, err)
	}
	if n < 0 { // conmon's "timed out" or unknown status
		n = exitCodeUnknown
	}
	return int32(n), st.ModTime(), nil
}
