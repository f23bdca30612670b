package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Start runs the created container's command. For crun it does what
// `crun start` does itself when nothing else is to be done, which saves
// an exec of the runtime on every container start (6–10 ms here).
//
// crun 1.8's create leaves the init blocked reading ROOT/ID/exec.fifo,
// whose read end the init holds. `crun start` opens the fifo for writing,
// unlinks it (to crun, a live container without that fifo is running:
// state, kill and delete go by it), writes one byte, which lets the init
// exec the command, and then runs the spec's poststart hooks. crib does
// the same three steps when the spec the runtime keeps (ROOT/ID/config.json)
// has no poststart hook, and leaves every other case to `crun start`: a
// spec with hooks (NRI may add them), one crib cannot read, a fifo that is
// not there or that no init reads any more (the runtime then says why).
func (r *cli) Start(ctx context.Context, id string) error {
	if r.fifoStart {
		if done, err := r.startThroughFifo(id); done {
			return err
		}
	}
	_, err := r.run(ctx, r.startArgs(id), nil)
	return err
}

// startThroughFifo is crun's start handshake; done is false when it was
// not attempted and the runtime's own start must run.
func (r *cli) startThroughFifo(id string) (done bool, err error) {
	dir := filepath.Join(r.c.Root, id)
	if hooks, err := hasPoststartHooks(filepath.Join(dir, "config.json")); err != nil || hooks {
		return false, nil
	}
	fifo := filepath.Join(dir, "exec.fifo")
	// Non-blocking: with no reader (the init is gone) the open fails at
	// once instead of waiting for one forever.
	fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, nil
	}
	defer unix.Close(fd)
	if err := unix.Unlink(fifo); err != nil {
		return true, fmt.Errorf("%s start %s: unlinking %s: %w", r.c.Name, id, fifo, err)
	}
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return true, fmt.Errorf("%s start %s: writing %s: %w", r.c.Name, id, fifo, err)
	}
	return true, nil
}

// hasPoststartHooks reads only the hooks of a spec.
func hasPoststartHooks(config string) (bool, error) {
	data, err := os.ReadFile(config)
	if err != nil {
		return false, err
	}
	var spec struct {
		Hooks *struct {
			Poststart []json.RawMessage `json:"poststart"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return false, err
	}
	if spec.Hooks == nil {
		return false, nil
	}
	return len(spec.Hooks.Poststart) > 0, nil
}
