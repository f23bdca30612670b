package rootless

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The addresses slirp4netns gives the namespace with --configure; pasta
// copies the host's instead, so these only hold for slirp4netns.
const slirpDNS = "10.0.2.3"

const outboundReadyTimeout = 10 * time.Second

func waitReadyByte(r *os.File) error {
	r.SetReadDeadline(time.Now().Add(outboundReadyTimeout))
	b := make([]byte, 1)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return nil
}

// startPastaProcess runs pasta against the holder's namespaces. pasta forks
// into the background once the namespace is configured and quits by
// itself when the namespace goes away. --no-map-gw keeps the host's
// loopback out of reach, as slirp4netns' --disable-host-loopback does:
// without it, connections to the gateway address land on the host's
// 127.0.0.1, open to every pod.
func startPastaProcess(pid int) (int, error) {
	path, err := exec.LookPath("pasta")
	if err != nil {
		return 0, fmt.Errorf("pasta: %w", err)
	}
	pidFile := filepath.Join(os.TempDir(), "crib-pasta-"+strconv.Itoa(pid)+".pid")
	cmd := exec.Command(path, "--config-net", "--quiet", "--pid", pidFile,
		"--no-map-gw", "-t", "none", "-u", "none", "-T", "none", "-U", "none", strconv.Itoa(pid))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pasta: %w: %s", err, strings.TrimSpace(string(out)))
	}
	data, err := os.ReadFile(pidFile)
	os.Remove(pidFile)
	if err != nil {
		return 0, fmt.Errorf("pasta did not write its pid: %w", err)
	}
	helperPID, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("pasta pid file: %w", err)
	}
	return helperPID, nil
}
