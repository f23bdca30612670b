package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/crib-dev/crib/internal/loopback"
)

// testNetNSEnv marks the re-executed test binary.
const testNetNSEnv = "CRIB_SANDBOX_TEST_NETNS"

// TestMain runs the tests as root inside a throwaway network and mount
// namespace (unshare --net --mount --propagation private), so that CNI's
// bridge, veths and iptables rules, and the pins and shm mounts, never
// touch the host's. Without root only the pure tests run.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(testNetNSEnv) == "" {
		os.Exit(reexecInNamespaces())
	}
	if inTestNamespaces() {
		if err := loopback.Up(); err != nil {
			fmt.Fprintln(os.Stderr, "loopback:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func reexecInNamespaces() int {
	args := append([]string{"--net", "--mount", "--propagation", "private", "--", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), testNetNSEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "re-running the tests under unshare:", err)
		return 1
	}
	return 0
}

func inTestNamespaces() bool { return os.Geteuid() == 0 && os.Getenv(testNetNSEnv) == "1" }

// needRoot skips tests that create namespaces, mounts and CNI networks.
func needRoot(t *testing.T) {
	t.Helper()
	if !inTestNamespaces() {
		t.Skip("needs root (runs in a throwaway network namespace)")
	}
}
