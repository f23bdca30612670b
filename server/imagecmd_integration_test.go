//go:build integration

package server_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `crib image` run by the user from the host's namespaces against a real
// rootless crib: archives that skopeo wrote (as `podman save` would), a
// listing, crictl seeing the same store through the socket, and a pull
// from the host-loopback test registry, which only the daemon's proxy
// reaches from inside crib's network namespace.

const testRegistry = "127.0.0.1:5000"

// image runs `crib image SUB` as the test user with the daemon's roots
// and registry configuration, stdin from in (nil: none).
func (d *daemon) image(in []byte, sub string, args ...string) (string, error) {
	full := append([]string{os.Getenv("CRIB_BIN"), "image", sub, "--root", d.root, "--runroot", d.runroot}, d.extra...)
	cmd := d.userInfo.command(append(full, args...)...)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// archive writes busybox from the test registry as transport (oci-archive
// or docker-archive) under name, in a directory the test user can read.
func archive(t *testing.T, transport, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crib-it-archive-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, transport+".tar")
	policy, err := filepath.Abs("../conformance/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("skopeo", "--policy", policy, "copy", "--src-tls-verify=false",
		"docker://"+testRegistry+"/docker.io/library/busybox:latest", transport+":"+path+":"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy to %s: %v\n%s", transport, err, out)
	}
	os.Chmod(path, 0o644)
	return path
}

func TestIntegrationImageCommands(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.startWithRegistry(t)
	ociPath := archive(t, "oci-archive", "docker.io/library/busybox:imported")
	dockerPath := archive(t, "docker-archive", "docker.io/library/busybox:imported-docker")

	t.Run("import an oci-archive by path", func(t *testing.T) {
		out, err := d.image(nil, "import", ociPath)
		if err != nil || !regexp.MustCompile(`imported docker.io/library/busybox:imported: sha256:[0-9a-f]{64}`).MatchString(out) {
			t.Fatalf("import: %v\n%s\ncrib:\n%s", err, out, d.out)
		}
	})

	t.Run("import a docker-archive from standard input", func(t *testing.T) {
		data, err := os.ReadFile(dockerPath)
		if err != nil {
			t.Fatal(err)
		}
		out, err := d.image(data, "import", "-")
		// The same image as the first archive: it is listed with all its names.
		if err != nil || !regexp.MustCompile(`imported .*docker.io/library/busybox:imported-docker.*: sha256:[0-9a-f]{64}`).MatchString(out) {
			t.Fatalf("import -: %v\n%s", err, out)
		}
	})

	t.Run("crib image ls shows both", func(t *testing.T) {
		out, err := d.image(nil, "ls")
		if err != nil {
			t.Fatalf("ls: %v\n%s", err, out)
		}
		if !strings.HasPrefix(out, "REPOSITORY") {
			t.Fatalf("ls has no header:\n%s", out)
		}
		for _, tag := range []string{"imported", "imported-docker"} {
			if !regexp.MustCompile(`(?m)^docker.io/library/busybox\s+` + tag + `\s+[0-9a-f]{12}\s+\S+B\s`).MatchString(out) {
				t.Errorf("ls lacks busybox:%s:\n%s", tag, out)
			}
		}
	})

	t.Run("crictl images through the socket sees them", func(t *testing.T) {
		out, err := u.command(os.Getenv("CRICTL_BIN"), "--image-endpoint", "unix://"+d.socket, "images").CombinedOutput()
		if err != nil {
			t.Fatalf("crictl images: %v\n%s", err, out)
		}
		for _, tag := range []string{"imported", "imported-docker"} {
			if !regexp.MustCompile(`(?m)^docker.io/library/busybox\s+` + tag + `\s`).Match(out) {
				t.Errorf("crictl images lacks busybox:%s:\n%s", tag, out)
			}
		}
	})

	const remote = "gcr.io/k8s-staging-cri-tools/test-image-1:latest"
	proxyFile := filepath.Join(d.runroot, "pull-proxy.url")

	t.Run("without the daemon's proxy the host-loopback registry is out of reach", func(t *testing.T) {
		hidden := proxyFile + ".hidden"
		if err := os.Rename(proxyFile, hidden); err != nil {
			t.Fatalf("the daemon published no pull proxy: %v", err)
		}
		defer os.Rename(hidden, proxyFile)
		out, err := d.image(nil, "pull", remote)
		if err == nil {
			t.Fatalf("pull succeeded from inside crib's network namespace with no proxy:\n%s", out)
		}
		t.Logf("as expected: %s", out)
	})

	t.Run("pull goes through the daemon's proxy", func(t *testing.T) {
		out, err := d.image(nil, "pull", remote)
		if err != nil || !strings.Contains(out, "pulled "+remote+": sha256:") {
			t.Fatalf("pull: %v\n%s\ncrib:\n%s", err, out, d.out)
		}
		t.Logf("crib image pull:\n%s", out)
		// Not a terminal: one line per finished blob, no escape sequences.
		if strings.Contains(out, "\x1b[") || !regexp.MustCompile(`(?m)^[0-9a-f]{12}: (done|already stored)`).MatchString(out) {
			t.Errorf("pull progress is not plain lines:\n%s", out)
		}
		ls, err := d.image(nil, "ls")
		if err != nil || !strings.Contains(ls, "gcr.io/k8s-staging-cri-tools/test-image-1") {
			t.Fatalf("ls after pull: %v\n%s", err, ls)
		}
	})

	t.Run("with crib stopped and no pod, the commands say to start it", func(t *testing.T) {
		d.stop(t)
		out, err := d.image(nil, "ls")
		if err == nil || !strings.Contains(out, "crib serve") {
			t.Fatalf("ls with crib stopped: %v\n%s", err, out)
		}
	})
}
