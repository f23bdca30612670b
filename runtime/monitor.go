package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
)

// The monitor, conmon, is started and its command line built in package
// oci (see the facts listed there). What crib reads and writes of its
// files is here: the exit file, the oom file, the ctl fifo.

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
