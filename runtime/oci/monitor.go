package oci

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

	"github.com/crib-dev/crib/internal/procfs"
	"github.com/crib-dev/crib/internal/steptrace"
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
//     resizes the container's pty, type 2 reopens the k8s log file.
//   - Attach: <socket-dir-path>/<id> is a symlink to the bundle and
//     <bundle>/attach a SOCK_SEQPACKET socket (see runtime/attach.go).
//   - --log-path takes DRIVER:PATH; paths are cut at the first ':' after
//     the driver.
//   - Each --runtime-arg goes before the runtime's subcommand.

// monitorArgs is conmon's command line for one container.
func (r *cli) monitorArgs(req CreateRequest) []string {
	logPath := "none:"
	if req.LogPath != "" {
		logPath = "k8s-file:" + req.LogPath
	}
	args := []string{r.c.Monitor.Path,
		"--api-version", "1",
		"-c", req.ID, "-u", req.ID, "-n", req.Name,
		"-r", r.c.Path,
		"-b", req.Bundle,
		"-p", req.PidFile,
		"-P", req.MonitorPidFile,
		"-l", logPath,
		"--exit-dir", r.c.Monitor.ExitDir,
		"--persist-dir", req.Bundle,
		"--socket-dir-path", r.c.Monitor.AttachDir,
		"--log-level", "warn",
	}
	for _, a := range r.globalArgs() {
		args = append(args, "--runtime-arg", a)
	}
	if r.c.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	if req.TTY {
		args = append(args, "--terminal")
	}
	if req.Stdin {
		args = append(args, "--stdin")
		if !req.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	return args
}

// syncMessage is conmon's report on the sync pipe.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message"`
}

// Create starts conmon, which creates (not starts) the container, and
// waits until it reports the container's pid. On failure it leaves no
// monitor behind; the caller removes the runtime state and the bundle.
func (r *cli) Create(ctx context.Context, req CreateRequest) (Created, error) {
	parentEnd, childEnd, err := os.Pipe()
	if err != nil {
		return Created{}, fmt.Errorf("monitor sync pipe: %w", err)
	}
	defer parentEnd.Close()
	argv := r.monitorArgs(req)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = req.Bundle
	cmd.ExtraFiles = []*os.File{childEnd}
	cmd.Env = append(os.Environ(), "_OCI_SYNCPIPE=3")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.WaitDelay = 2 * time.Second
	// Its own session, so a signal to crib's process group (a ^C at a
	// terminal) does not reach the monitors.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = r.c.Runner.Run(cmd)
	childEnd.Close()
	if err != nil {
		return Created{}, fmt.Errorf("starting conmon for container %s: %w: %s", req.ID, err, strings.TrimSpace(stderr.String()))
	}
	// The monitor forked and its first process exited; the runtime's
	// create runs from here to the sync message.
	steptrace.Mark(ctx, "monitor start")
	created := Created{MonitorPid: ReadPidFile(req.MonitorPidFile)}
	msg, err := readSyncMessage(ctx, parentEnd)
	if err != nil {
		r.KillMonitor(created.MonitorPid, req.ID)
		return Created{}, fmt.Errorf("container %s: %w", req.ID, err)
	}
	if msg.Data <= 0 {
		r.KillMonitor(created.MonitorPid, req.ID)
		return Created{}, fmt.Errorf("%s create of container %s failed: %s", r.c.Name, req.ID, strings.TrimSpace(msg.Message))
	}
	created.Pid = msg.Data
	return created, nil
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

// KillMonitor kills a monitor crib started for id; the pid is checked to
// still be that conmon, so a recycled pid is never signalled.
func (r *cli) KillMonitor(pid int, id string) {
	if r.Monitoring(pid, id) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		r.c.Runner.Kick()
	}
}

// Monitoring reports whether pid is a live conmon monitoring id.
func (r *cli) Monitoring(pid int, id string) bool {
	if !alive(pid) {
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

// ReadPidFile reads a pid file a runtime or the monitor wrote; 0 when
// there is none (yet).
func ReadPidFile(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// alive: pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return pid > 0 && err == nil && st.State != 'Z' && st.State != 'X'
}
