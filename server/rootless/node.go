package rootless

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/mountinfo"
)

// The node's PID and IPC namespaces. The holder is PID 1 of a PID
// namespace and the owner of an IPC namespace of its own (besides the
// user, mount and network ones), and crib's daemon lives in both. A pod
// that asks for the node's PID or IPC namespace gets them by inheriting
// the daemon's (runc leaves a namespace the spec does not name as its
// caller's), so such a pod sees crib's processes and crib's /dev/shm but
// nothing of the user outside crib's namespaces, crib's parent included.
// `crib unshare`, and so a kubelet run through it, joins them too: it sees
// the same processes as a hostPID pod.
//
// Joining a PID namespace only changes where the caller's next child goes,
// and needs CAP_SYS_ADMIN in the user namespace the caller is in, which
// crib's parent lacks. So nsenter first joins the user, mount, network
// and IPC namespaces and executes crib again in a short "node stage"
// (NodeStage, hooked at the top of main), which joins the PID namespace
// on one locked thread and from there:
//   - for the daemon, forks it with CLONE_PARENT, so that it is the
//     parent's child (the parent waits for it, signals it, and it dies
//     with the parent), reports its pid and exits;
//   - for `crib unshare` and `crib image`, runs the command as its child
//     (through a last "pdeath" stage that ties the command's life to the
//     relay's) and relays signals and the exit status. In crib's mount
//     namespace /proc is the node's, where /proc/self of a process outside
//     the node's PID namespace does not resolve: whatever runs there must
//     be in it.
//
// A holder an older crib made has no PID or IPC namespace of its own: crib
// then keeps that older behaviour (the machine's PID and IPC namespaces)
// with a warning until the holder is made again, so that its pods keep
// running, as for copy-up.

// hasNodeNamespaces reports whether the holder at pid has PID and IPC
// namespaces of its own (a holder of this crib) rather than the caller's
// (one an older crib made). The caller is crib's parent or `crib unshare`,
// in the machine's namespaces.
func hasNodeNamespaces(pid int) bool {
	for _, ns := range []string{"pid", "ipc"} {
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			return false
		}
		if ours, _ := os.Readlink("/proc/self/ns/" + ns); theirs == ours {
			return false
		}
	}
	return true
}

// joinArgs are nsenter's flags for the namespaces it can join itself.
func joinArgs(holderPID int, node bool) []string {
	args := []string{"--target", strconv.Itoa(holderPID), "--user", "--mount", "--net"}
	if node {
		args = append(args, "--ipc")
	}
	return args
}

// openPIDNamespace opens the holder's PID namespace for a child to
// inherit (no close-on-exec: it crosses nsenter's exec).
func openPIDNamespace(holderPID int) (int, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/pid", holderPID), unix.O_RDONLY, 0)
	if err != nil {
		return -1, fmt.Errorf("opening the node's PID namespace: %w", err)
	}
	return fd, nil
}

// daemonProcess is the daemon as the parent supervises it: a child it
// started itself (an older holder) or one the node stage forked for it.
type daemonProcess struct {
	Process *os.Process
	wait    func() error
}

// Wait waits for the daemon to exit; a non-zero exit is an
// *exec.ExitError, as from exec.Cmd.Wait.
func (d *daemonProcess) Wait() error { return d.wait() }

// startDaemonProcess starts cmd, nsenter executing crib's daemon in the
// holder's namespaces, with the handoff h. With node namespaces, nsenter
// executes the node stage, which forks the daemon into the node's PID
// namespace and reports its pid on a pipe; the daemon is the parent's
// child all the same.
func startDaemonProcess(cmd *exec.Cmd, h Handoff, holderPID int, node bool, log *slog.Logger) (*daemonProcess, error) {
	if !node {
		warnOlderHolder(log, holderPID)
		env, err := h.environ(os.Environ())
		if err != nil {
			return nil, err
		}
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return &daemonProcess{Process: cmd.Process, wait: cmd.Wait}, nil
	}
	pidR, err := passNodeLaunch(cmd, holderPID, &h)
	if err != nil {
		return nil, err
	}
	defer pidR.Close()
	if cmd.Env, err = h.environ(os.Environ()); err != nil {
		return nil, err
	}
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles[len(cmd.ExtraFiles)-2:] {
		f.Close() // the child's ends
	}
	if err != nil {
		return nil, err
	}
	out, _ := io.ReadAll(pidR)
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("node stage: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("node stage reported no pid (%q)", out)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	return &daemonProcess{Process: p, wait: func() error { return waitProcess(p) }}, nil
}

// passNodeLaunch hands cmd the holder's PID namespace and a pipe for the
// daemon's pid, after the descriptors cmd already passes (the daemon gets
// those, and only those), and names them in h. It returns the pipe's read
// end.
func passNodeLaunch(cmd *exec.Cmd, holderPID int, h *Handoff) (*os.File, error) {
	nsFD, err := openPIDNamespace(holderPID)
	if err != nil {
		return nil, err
	}
	ns := os.NewFile(uintptr(nsFD), "node-pidns")
	pidR, pidW, err := os.Pipe()
	if err != nil {
		ns.Close()
		return nil, err
	}
	first := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, ns, pidW)
	h.NodeStage = fmt.Sprintf("daemon:%d:%d", first, first+1)
	return pidR, nil
}

func waitProcess(p *os.Process) error {
	st, err := p.Wait()
	if err == nil && !st.Success() {
		return &exec.ExitError{ProcessState: st}
	}
	return err
}

// warnOlderHolder says what an older holder means for pods.
func warnOlderHolder(log *slog.Logger, holderPID int) {
	log.Warn("crib's namespaces were made by an older crib, without PID and IPC namespaces of their own: hostPID and hostIPC pods get the machine's until they are made again (crib stopped with no pods)", "holder", holderPID)
}

// NodeStage runs the node stage when crib was executed as one (see
// above) and reports its exit code; ok is false otherwise. It must run
// before anything else in main.
func NodeStage() (code int, ok bool) {
	if h, _ := peekHandoff(); h.NodeStage == "" {
		return 0, false
	}
	h, err := takeHandoff()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 1, true
	}
	job := h.NodeStage
	h.NodeStage = ""
	if job == "pdeath" {
		err := execDying(os.Args[1:], h)
		if len(os.Args) > 1 {
			err = fmt.Errorf("executing %s: %w", os.Args[1], err)
		}
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 127, true
	}
	fds, err := stageFDs(job)
	if err == nil {
		if strings.HasPrefix(job, "daemon:") {
			err = launchDaemon(fds[0], fds[1], h)
		} else {
			code, err = relayCommand(fds[0], os.Args[1:], h)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 1, true
	}
	return code, true
}

// stageFDs parses "daemon:NS:PIPE" or "exec:NS" and marks the descriptors
// close-on-exec, so that nothing the stage starts inherits them.
func stageFDs(job string) ([]int, error) {
	kind, rest, _ := strings.Cut(job, ":")
	want := map[string]int{"daemon": 2, "exec": 1}[kind]
	parts := strings.Split(rest, ":")
	if want == 0 || len(parts) != want {
		return nil, fmt.Errorf("malformed %s %q", nodeStageEnv, job)
	}
	fds := make([]int, len(parts))
	for i, p := range parts {
		fd, err := strconv.Atoi(p)
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("malformed %s %q", nodeStageEnv, job)
		}
		unix.CloseOnExec(fd)
		fds[i] = fd
	}
	return fds, nil
}

// enterPIDNamespace makes the calling thread's children start in the PID
// namespace open at nsFD. The thread stays locked for good: the Go
// runtime ends it with its goroutine instead of reusing it.
func enterPIDNamespace(nsFD int) error {
	runtime.LockOSThread()
	if err := unix.Setns(nsFD, unix.CLONE_NEWPID); err != nil {
		return fmt.Errorf("joining the node's PID namespace: %w", err)
	}
	unix.Close(nsFD)
	return nil
}

// launchDaemon forks the daemon (the same binary and arguments) into the
// node's PID namespace as a sibling, a child of crib's parent, and writes
// its pid to pipeFD. The daemon keeps the descriptors below nsFD: the
// ready pipe and any socket systemd passed. It hands on the parent's h.
func launchDaemon(nsFD, pipeFD int, h Handoff) error {
	pipe := os.NewFile(uintptr(pipeFD), "pid-pipe")
	defer pipe.Close()
	// The parent is outside the node's PID namespace: the daemon sees
	// its parent as pid 0.
	h.ParentPID, h.NodeNamespaces = 0, true
	env, err := h.environ(os.Environ())
	if err != nil {
		return err
	}
	files := make([]uintptr, nsFD)
	for i := range files {
		files[i] = uintptr(i)
	}
	done := make(chan error, 1)
	var pid int
	go func() {
		if err := enterPIDNamespace(nsFD); err != nil {
			done <- err
			return
		}
		var err error
		// os.Args[0] is the absolute path the parent executed: /proc/self
		// may be the node's /proc here, where this stage is not.
		pid, err = syscall.ForkExec(os.Args[0], os.Args, &syscall.ProcAttr{
			Env:   env,
			Files: files,
			Sys:   &syscall.SysProcAttr{Cloneflags: unix.CLONE_PARENT},
		})
		done <- err
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("starting crib in the node's PID namespace: %w", err)
	}
	_, err = fmt.Fprintf(pipe, "%d\n", pid)
	return err
}

// relayCommand runs argv in the node's PID namespace and waits for it,
// passing on the signals a supervisor sends; the exit code is the
// command's (128+n for signal n). The command gets the handoff h.
func relayCommand(nsFD int, argv []string, h Handoff) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no command to run in crib's namespaces")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "crib:", err)
		return 127, nil // as a shell, or nsenter, says "not found"
	}
	h.NodeStage = "pdeath"
	env, err := h.environ(os.Environ())
	if err != nil {
		return 0, err
	}
	sigs := make(chan os.Signal, 8)
	relay, relayed := relayedSignals()
	signal.Notify(sigs, relayed...)
	// The command goes through crib's "pdeath" stage (see execDying), not
	// straight to argv: a supervisor that SIGKILLs `crib unshare` expects
	// the command gone too, as it was when nsenter became the command.
	cmd := &exec.Cmd{Path: os.Args[0], Args: append([]string{os.Args[0], path}, argv...),
		Env:   env,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, ExtraFiles: inheritedFiles()}
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		// The thread that started the command waits for it: the command
		// is that thread's child.
		if err := enterPIDNamespace(nsFD); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return 0, err
	}
	for {
		select {
		case s := <-sigs:
			if relay(s) {
				cmd.Process.Signal(s)
			}
		case <-exited:
			return processExitCode(cmd.ProcessState), nil
		}
	}
}

// execDying executes the program at args[0] with the argument vector
// args[1:] to die with the process that started it. Go's
// SysProcAttr.Pdeathsig cannot do that here: it checks that the parent is
// still there by comparing its pid across the PID namespaces, and kills
// the child at once. The program gets the handoff h.
func execDying(args []string, h Handoff) error {
	if len(args) < 2 {
		return errors.New("no command to run in crib's namespaces")
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return err
	}
	env, err := h.environ(os.Environ())
	if err != nil {
		return err
	}
	return syscall.Exec(args[0], args[1:], env)
}

// maxInheritedFD bounds the search for descriptors the caller passed.
const maxInheritedFD = 1024

// inheritedFiles are the descriptors above standard error this process
// was given (those without close-on-exec: Go opens its own with it), each
// at its own number, as exec.Cmd.ExtraFiles (nil: closed), so that the
// command gets them as nsenter would have passed them (`crib image
// import` passes the archive it opened this way).
func inheritedFiles() []*os.File {
	var files []*os.File
	for fd := 3; fd < maxInheritedFD; fd++ {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		for len(files) < fd-3 {
			files = append(files, nil)
		}
		files = append(files, os.NewFile(uintptr(fd), "inherited"))
	}
	return files
}

// enterArgs returns the argv and environment with which nsenter runs argv
// inside the namespaces of the holder at holderPID, from the machine's
// namespaces: nsenter joins the user, mount, network and IPC namespaces,
// the node stage the PID namespace (an older holder has neither of these
// two, and nsenter executes argv itself). wd is resolved inside; argv
// gets the handoff h.
func enterArgs(nsenter string, holderPID int, wd string, argv []string, h Handoff) ([]string, []string, error) {
	node := hasNodeNamespaces(holderPID)
	args := append(append([]string{nsenter}, joinArgs(holderPID, node)...), "--wdns="+wd, "--")
	if !node {
		env, err := h.environ(os.Environ())
		return append(args, argv...), env, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("finding crib's own binary: %w", err)
	}
	nsFD, err := openPIDNamespace(holderPID)
	if err != nil {
		return nil, nil, err
	}
	h.NodeStage = "exec:" + strconv.Itoa(nsFD)
	env, err := h.environ(os.Environ())
	return append(append(args, exe), argv...), env, err
}

// relayedSignals are those a supervisor sends. A terminal's ^C and ^\
// reach the command directly (it is in the same process group): relaying
// them too would deliver them twice, so on a terminal they are caught and
// dropped. (Not ignored: the command would inherit SIG_IGN.)
func relayedSignals() (relay func(os.Signal) bool, sigs []os.Signal) {
	_, err := unix.IoctlGetTermios(0, unix.TCGETS)
	onTerminal := err == nil
	relay = func(s os.Signal) bool {
		return !onTerminal || (s != syscall.SIGINT && s != syscall.SIGQUIT)
	}
	return relay, []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGINT, syscall.SIGQUIT}
}

func processExitCode(st *os.ProcessState) int {
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// Sources that mark the file systems mountNodeFileSystems made, so that a
// restarted daemon, rejoining the same mount namespace, finds them.
const (
	nodeShmSource    = "crib-node-shm"
	nodeMqueueSource = "crib-node-mqueue"
)

// mountNodeFileSystems gives crib's mount namespace the file systems of
// the node's PID and IPC namespaces in place of the machine's: /proc,
// /dev/shm and /dev/mqueue, which hostPID and hostIPC containers bind. It
// runs in the daemon, in those namespaces, and does nothing where a
// previous daemon already did it.
func mountNodeFileSystems() error {
	if self, _ := os.Readlink("/proc/self"); self != strconv.Itoa(os.Getpid()) {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mounting the node's /proc: %w", err)
		}
	}
	mounts, err := mountinfo.Mounts()
	if err != nil {
		return err
	}
	for _, m := range []struct{ point, fstype, source, data string }{
		{"/dev/shm", "tmpfs", nodeShmSource, "mode=1777"},
		{"/dev/mqueue", "mqueue", nodeMqueueSource, ""},
	} {
		point, err := filepath.EvalSymlinks(m.point)
		if errors.Is(err, os.ErrNotExist) {
			continue // the machine has none to hide
		}
		if err != nil {
			return err
		}
		if slices.Contains(mounts, mountinfo.Mount{Point: point, FSType: m.fstype, Source: m.source}) {
			continue
		}
		if err := unix.Mount(m.source, point, m.fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, m.data); err != nil {
			return fmt.Errorf("mounting the node's %s: %w", m.point, err)
		}
	}
	return nil
}

// pipeReaderGone reports whether nobody holds the read end of the pipe
// whose write end is fd. In the node's PID namespace the parent's pid is 0
// whether it lives or not; the ready pipe, read by the parent alone,
// tells.
func pipeReaderGone(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1 && fds[0].Revents&unix.POLLERR != 0
}
