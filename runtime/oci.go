package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/crib-dev/crib/internal/errdefs"
)

// Handler is one CRI runtime handler: an OCI runtime binary (runc or crun,
// which share the command line crib uses) and the state directory it is
// given with --root.
type Handler struct {
	Name string
	// Path is the runtime binary.
	Path string
	// Root is the runtime's --root state directory; empty means
	// RunRoot/<Name>.
	Root string
	// SystemdCgroup makes the runtime and the monitor treat cgroup paths
	// as systemd "slice:prefix:name" triples.
	SystemdCgroup bool
	// SpecVersion, when set, replaces the ociVersion of the bundles this
	// runtime is given (SpecVersionFor).
	SpecVersion string
}

// ociRuntime runs the commands of one OCI runtime for crib. Every command
// is run through the reaper so its exit status is not stolen.
type ociRuntime struct {
	h      Handler
	reaper *Reaper
}

// ociTimeout bounds a runtime command that should take milliseconds, so a
// wedged runtime cannot hang a CRI call forever.
const ociTimeout = 30 * time.Second

// globalArgs come before every subcommand.
func (r ociRuntime) globalArgs() []string {
	args := []string{"--root", r.h.Root}
	if r.h.SystemdCgroup {
		args = append(args, "--systemd-cgroup")
	}
	return args
}

// run executes one runtime subcommand and returns its stdout; a failure
// carries the runtime's stderr, which names the cause.
func (r ociRuntime) run(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ociTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.h.Path, append(r.globalArgs(), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := r.reaper.Run(cmd); err != nil {
		return stdout.Bytes(), &ociError{cmd: r.h.Name + " " + args[0], err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// ociError is a failed runtime command with what it printed.
type ociError struct {
	cmd    string
	err    error
	stderr string
}

func (e *ociError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *ociError) Unwrap() error { return e.err }

// said reports whether the runtime's message contains one of the phrases;
// runc and crun word "no such container" and "not running" differently.
func (e *ociError) said(phrases ...string) bool {
	msg := strings.ToLower(e.stderr)
	for _, p := range phrases {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func ociSaid(err error, phrases ...string) bool {
	var oe *ociError
	return errors.As(err, &oe) && oe.said(phrases...)
}

// Phrases runc 1.1 and crun 1.8 print.
var (
	phrasesGone       = []string{"does not exist", "not exist", "no such file", "container not found"}
	phrasesNotRunning = []string{"not running", "container not running", "process already finished", "no such process", "stopped"}
)

func (r ociRuntime) start(ctx context.Context, id string) error {
	_, err := r.run(ctx, "start", id)
	return err
}

// kill signals the container's init, or with all every process in its
// cgroup. A container that is already gone or stopped is not an error.
func (r ociRuntime) kill(ctx context.Context, id string, signal string, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, append(args, id, signal)...)
	if err != nil && ociSaid(err, append(phrasesGone, phrasesNotRunning...)...) {
		return nil
	}
	return err
}

// delete removes the runtime's state of the container, killing it first if
// needed; deleting what does not exist succeeds.
func (r ociRuntime) delete(ctx context.Context, id string) error {
	_, err := r.run(ctx, "delete", "--force", id)
	if err != nil && ociSaid(err, phrasesGone...) {
		return nil
	}
	return err
}

// ociState is the part of `runtime state` crib reads.
type ociState struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func (r ociRuntime) state(ctx context.Context, id string) (ociState, error) {
	out, err := r.run(ctx, "state", id)
	if err != nil {
		if ociSaid(err, phrasesGone...) {
			return ociState{}, fmt.Errorf("%w: %s has no container %s", errdefs.ErrNotFound, r.h.Name, id)
		}
		return ociState{}, err
	}
	var st ociState
	if err := json.Unmarshal(out, &st); err != nil {
		return ociState{}, fmt.Errorf("%s state %s: %w", r.h.Name, id, err)
	}
	return st, nil
}

// update applies new resource limits to a running container; the limits
// travel as the OCI LinuxResources JSON on stdin.
func (r ociRuntime) update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ociTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.h.Path, append(r.globalArgs(), "update", "--resources", "-", id)...)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := r.reaper.Run(cmd); err != nil {
		return &ociError{cmd: r.h.Name + " update", err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return nil
}
