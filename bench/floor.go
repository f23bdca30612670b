package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/mountinfo"
)

// The floor: what an OCI runtime alone (runc, and crun, crib's default
// where it works) costs for the same container, as the same user, in the
// same user, mount and network namespaces crib's containers live in (the
// helper is started through `crib unshare`), with a cgroup in the same
// delegated subtree. Like a crib container it gets new PID, mount, IPC and
// UTS namespaces and joins an existing network namespace.
//
// A helper per runtime runs for the whole benchmark and answers one
// command per line on stdin ("run ID", "exec ID", "stop ID") with "ok
// NANOSECONDS" or "err MESSAGE", so the floor is measured interleaved
// with the runtimes.

// floorMain is `cribbench floor`: the helper side.
func floorMain(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	dir := fs.String("dir", "", "bundle directory (config.json)")
	rootfs := fs.String("rootfs", "", "the containers' root file system (absolute; shared by the floors)")
	state := fs.String("state", "", "the runtime's state directory")
	rt := fs.String("runtime", "runc", "the OCI runtime binary (runc or crun)")
	procs := fs.String("cgroup-procs", "", "comma-separated cgroup.procs files of the delegated subtree to join")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files, err := inView(*procs)
	if err != nil {
		return err
	}
	if err := joinCgroups(files); err != nil {
		return err
	}
	// `runtime run -d` leaves the container's init to us: reap it after delete.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming a subreaper: %w", err)
	}
	if err := writeFloorSpec(*rt, *dir, *rootfs, floorCgroupsPath(files)); err != nil {
		return err
	}
	h := &floorHelper{rt: *rt, dir: *dir, state: *state, inits: map[string]int{}}
	defer h.deleteAll()
	return h.serve(os.Stdin, os.Stdout)
}

// inView maps the host's cgroup.procs paths onto crib's mount namespace,
// where a v1 hierarchy may be mounted from crib's own cgroup rather than
// its root (crib's cgroup view, server/cgroupview.go): a path below the
// mount's root is shown relative to it.
func inView(list string) ([]string, error) {
	mounts, err := mountinfo.Entries()
	if err != nil {
		return nil, err
	}
	roots := map[string]string{}
	for _, m := range mounts {
		if m.FSType == "cgroup" {
			roots[m.Point] = m.Root // the last listed is on top
		}
	}
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f == "" {
			continue
		}
		rest, _ := strings.CutPrefix(f, "/sys/fs/cgroup/")
		h, sub, _ := strings.Cut(rest, "/")
		point := "/sys/fs/cgroup/" + h
		if root := roots[point]; root != "" && root != "/" && strings.HasPrefix("/"+sub, root+"/") {
			f = filepath.Join(point, strings.TrimPrefix("/"+sub, root))
		}
		out = append(out, f)
	}
	return out, nil
}

func joinCgroups(files []string) error {
	for _, f := range files {
		// "0" is the writing process itself, whatever its pid is here.
		if err := os.WriteFile(f, []byte("0"), 0); err != nil {
			return fmt.Errorf("joining cgroup %s: %w", f, err)
		}
	}
	return nil
}

// floorCgroupsPath is the containers' cgroupsPath: absolute below the
// delegated subtree when it sits at the same place in every hierarchy (as
// in crib's view; runc and crun then read it alike), else relative to the
// helper's own cgroup (runc's reading).
func floorCgroupsPath(files []string) string {
	var base string
	for _, f := range files {
		rest, _ := strings.CutPrefix(filepath.Dir(f), "/sys/fs/cgroup/")
		_, sub, _ := strings.Cut(rest, "/")
		if base != "" && base != "/"+sub {
			return "cribbench-floor"
		}
		base = "/" + sub
	}
	if base == "" {
		return "cribbench-floor"
	}
	return filepath.Join(base, "cribbench-floor")
}

// writeFloorSpec writes config.json from `RUNTIME spec`, with the workload
// command and the namespaces a crib container gets.
func writeFloorSpec(rt, dir, rootfs, cgroupsPath string) error {
	os.Remove(filepath.Join(dir, "config.json"))
	cmd := exec.Command(rt, "spec", "--bundle", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec: %w: %s", rt, err, out)
	}
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("%s spec output: %w", rt, err)
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = workloadCommand
	spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	// As in crib's rootless containers without a cgroup namespace: the
	// view's /sys/fs/cgroup bound in, not a cgroup mount the runtime
	// builds from the host's mount table.
	var mounts []any
	for _, m := range spec["mounts"].([]any) {
		if m.(map[string]any)["destination"] != "/sys/fs/cgroup" {
			mounts = append(mounts, m)
		}
	}
	spec["mounts"] = append(mounts, map[string]any{"destination": "/sys/fs/cgroup", "type": "bind", "source": "/sys/fs/cgroup",
		"options": []string{"rbind", "nosuid", "noexec", "nodev", "ro"}})
	linux := spec["linux"].(map[string]any)
	linux["cgroupsPath"] = cgroupsPath
	linux["namespaces"] = []map[string]string{{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}}
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

type floorHelper struct {
	rt, dir, state string
	inits          map[string]int // container → its init's pid
}

func (h *floorHelper) serve(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			fmt.Fprintf(out, "err bad command %q\n", sc.Text())
			continue
		}
		d, err := h.do(f[0], f[1])
		if err != nil {
			fmt.Fprintf(out, "err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Fprintf(out, "ok %d\n", d.Nanoseconds())
	}
	return sc.Err()
}

func (h *floorHelper) do(op, id string) (time.Duration, error) {
	switch op {
	case "run":
		d, err := h.run1("run", "-d", "--bundle", h.dir, id)
		if err == nil {
			err = h.recordInit(id)
		}
		return d, err
	case "exec":
		return h.run1("exec", id, "true")
	case "stop":
		return h.stop(id)
	}
	return 0, fmt.Errorf("unknown op %q", op)
}

// stop is what StopContainer and RemoveContainer must at least do: signal
// the container (its workload exits on SIGTERM), wait for its init to
// exit (this helper is its subreaper), and delete it. `runc delete -f`
// would poll in 100 ms steps instead.
func (h *floorHelper) stop(id string) (time.Duration, error) {
	start := time.Now()
	if _, err := h.run1("kill", id, "TERM"); err != nil {
		return 0, err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(h.inits[id], &ws, 0, nil); err != nil {
		return 0, fmt.Errorf("waiting for container %s: %w", id, err)
	}
	delete(h.inits, id)
	if _, err := h.run1("delete", id); err != nil {
		return 0, err
	}
	d := time.Since(start)
	reapOrphans() // the workload's sleep, handed up when its PID namespace ended
	return d, nil
}

// recordInit remembers the container's init pid (untimed) for stop.
func (h *floorHelper) recordInit(id string) error {
	out, err := exec.Command(h.rt, "--root", h.state, "state", id).Output()
	if err != nil {
		return fmt.Errorf("%s state %s: %w", h.rt, id, err)
	}
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Pid <= 0 {
		return fmt.Errorf("%s state %s: no pid in %q", h.rt, id, out)
	}
	h.inits[id] = st.Pid
	return nil
}

// run1 runs one runtime command and returns how long it took.
func (h *floorHelper) run1(args ...string) (time.Duration, error) {
	cmd := exec.Command(h.rt, append([]string{"--root", h.state}, args...)...)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	// A file, not a pipe: a detached container inherits the runtime's stdio, and
	// a pipe would stay open as long as the container lives.
	stderr, err := os.CreateTemp("", "cribbench-floor-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(stderr.Name())
	defer stderr.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, stderr
	start := time.Now()
	err = cmd.Run()
	d := time.Since(start)
	if err != nil {
		msg, _ := os.ReadFile(stderr.Name())
		return d, fmt.Errorf("%s %s: %w: %s", filepath.Base(h.rt), strings.Join(args, " "), err, msg)
	}
	return d, nil
}

// deleteAll removes every container the helper's runtime state still holds,
// so an aborted benchmark leaves no floor container behind.
func (h *floorHelper) deleteAll() {
	entries, _ := os.ReadDir(h.state)
	for _, e := range entries {
		if e.IsDir() {
			exec.Command(h.rt, "--root", h.state, "delete", "-f", e.Name()).Run()
		}
	}
	reapOrphans()
}

// reapOrphans collects exited containers handed to this subreaper.
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// floorClient drives the helper from the benchmark.
type floorClient struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startFloor(argv []string) (*floorClient, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the floor helper: %w", err)
	}
	return &floorClient{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

func (f *floorClient) op(op, id string) (time.Duration, error) {
	if _, err := fmt.Fprintf(f.in, "%s %s\n", op, id); err != nil {
		return 0, fmt.Errorf("floor helper: %w", err)
	}
	if !f.out.Scan() {
		return 0, errors.New("floor helper exited")
	}
	line := f.out.Text()
	if msg, ok := strings.CutPrefix(line, "err "); ok {
		return 0, fmt.Errorf("floor: %s", msg)
	}
	ns, err := strconv.ParseInt(strings.TrimPrefix(line, "ok "), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("floor helper said %q", line)
	}
	return time.Duration(ns), nil
}

func (f *floorClient) close() error {
	f.in.Close()
	return f.cmd.Wait()
}
