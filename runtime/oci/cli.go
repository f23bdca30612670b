package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
)

// cli is an OCI runtime driven through its command line. runc 1.1 and
// crun 1.8 share the subcommands crib uses (create through conmon, start,
// kill [--all], delete --force, state, update --resources -, exec
// --process --pid-file [--detach --tty --console-socket]); where they
// differ, the flavour's fields say how. Every argv is built by a method
// of cli, so the golden tests see each one.
type cli struct {
	c Config
	// systemdArgs are the global arguments that select the systemd cgroup
	// driver: runc knows only --systemd-cgroup; crun's own spelling is
	// --cgroup-manager=systemd (--systemd-cgroup is its alias for runc's).
	systemdArgs []string
	// maxSpec is the newest OCI spec version the runtime accepts ("" for
	// any): crun 1.8 fails a config.json of version 1.2 with "unknown
	// version specified" but takes 1.0 and 1.1, and ignores the fields
	// it does not know; runc 1.1 takes 1.2.
	maxSpec string
	// fifoStart: start a created container through the runtime's exec
	// fifo instead of an exec of `start` where nothing else is to be done
	// (crun; see start.go).
	fifoStart bool
}

func newRunc(c Config) *cli {
	return &cli{c: c, systemdArgs: []string{"--systemd-cgroup"}}
}

func newCrun(c Config) *cli {
	return &cli{c: c, systemdArgs: []string{"--cgroup-manager=systemd"}, maxSpec: "1.1.0", fifoStart: true}
}

func (r *cli) Name() string { return r.c.Name }

func (r *cli) SpecVersion(v string) string {
	if r.maxSpec != "" && newerVersion(v, r.maxSpec) {
		return r.maxSpec
	}
	return v
}

// newerVersion compares the major and minor numbers of two versions.
func newerVersion(a, b string) bool {
	var amaj, amin, bmaj, bmin int
	fmt.Sscanf(a, "%d.%d", &amaj, &amin)
	fmt.Sscanf(b, "%d.%d", &bmaj, &bmin)
	return amaj > bmaj || amaj == bmaj && amin > bmin
}

// timeout bounds a runtime command that should take milliseconds, so a
// wedged runtime cannot hang a CRI call forever.
const timeout = 30 * time.Second

// globalArgs come before every subcommand.
func (r *cli) globalArgs() []string {
	args := []string{"--root", r.c.Root}
	if r.c.SystemdCgroup {
		args = append(args, r.systemdArgs...)
	}
	return args
}

// argv is the runtime's full command line for one subcommand.
func (r *cli) argv(sub ...string) []string {
	return append(append([]string{r.c.Path}, r.globalArgs()...), sub...)
}

func (r *cli) startArgs(id string) []string { return r.argv("start", id) }

func (r *cli) killArgs(id string, sig unix.Signal, all bool) []string {
	if all {
		return r.argv("kill", "--all", id, strconv.Itoa(int(sig)))
	}
	return r.argv("kill", id, strconv.Itoa(int(sig)))
}

func (r *cli) deleteArgs(id string) []string { return r.argv("delete", "--force", id) }
func (r *cli) stateArgs(id string) []string  { return r.argv("state", id) }

// updateArgs: the limits travel as the OCI LinuxResources JSON on stdin.
func (r *cli) updateArgs(id string) []string { return r.argv("update", "--resources", "-", id) }

// execArgs runs the process in the foreground, the runtime's stdio being
// the process's.
func (r *cli) execArgs(req ExecRequest) []string {
	return r.argv("exec", "--process", req.ProcessFile, "--pid-file", req.PidFile, req.ID)
}

// execTTYArgs: a runtime takes a console socket only when it detaches;
// the process then passes to the nearest subreaper, crib.
func (r *cli) execTTYArgs(req ExecRequest, consoleSocket string) []string {
	return r.argv("exec", "--detach", "--tty", "--console-socket", consoleSocket,
		"--process", req.ProcessFile, "--pid-file", req.PidFile, req.ID)
}

// run executes one command line and returns its stdout; a failure carries
// the runtime's stderr, which names the cause.
func (r *cli) run(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := r.c.Runner.Run(cmd); err != nil {
		return stdout.Bytes(), &cmdError{cmd: r.c.Name + " " + subcommand(argv, len(r.globalArgs())), err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

func subcommand(argv []string, globals int) string {
	if len(argv) > 1+globals {
		return argv[1+globals]
	}
	return ""
}

func (r *cli) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	_, err := r.run(ctx, r.killArgs(id, sig, all), nil)
	if err != nil && said(err, append(phrasesGone, phrasesNotRunning...)...) {
		return nil
	}
	if err != nil && all {
		// kill --all finds the processes through the cgroup; without a
		// usable one the init is what the runtime knows.
		_, err = r.run(ctx, r.killArgs(id, sig, false), nil)
		if err != nil && said(err, append(phrasesGone, phrasesNotRunning...)...) {
			return nil
		}
	}
	return err
}

func (r *cli) Delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, r.deleteArgs(id), nil)
	if err != nil && said(err, phrasesGone...) {
		return nil
	}
	return err
}

func (r *cli) State(ctx context.Context, id string) (State, error) {
	out, err := r.run(ctx, r.stateArgs(id), nil)
	if err != nil {
		if said(err, phrasesGone...) {
			return State{}, fmt.Errorf("%w: %s has no container %s", errdefs.ErrNotFound, r.c.Name, id)
		}
		return State{}, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return State{}, fmt.Errorf("%s state %s: %w", r.c.Name, id, err)
	}
	return st, nil
}

func (r *cli) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = r.run(ctx, r.updateArgs(id), data)
	return err
}

// cmdError is a failed runtime command with what it printed.
type cmdError struct {
	cmd    string
	err    error
	stderr string
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

// said reports whether the runtime's message contains one of the phrases;
// runc and crun word "no such container" and "not running" differently.
func said(err error, phrases ...string) bool {
	var ce *cmdError
	if !errors.As(err, &ce) {
		return false
	}
	msg := strings.ToLower(ce.stderr)
	for _, p := range phrases {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// Phrases runc 1.1 and crun 1.8 print (crun: "error opening file
// `ROOT/ID/status`: No such file or directory" for an unknown id).
var (
	phrasesGone       = []string{"does not exist", "not exist", "no such file", "container not found"}
	phrasesNotRunning = []string{"not running", "container not running", "process already finished", "no such process", "stopped"}
)
