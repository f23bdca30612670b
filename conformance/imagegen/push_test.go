package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startRegistry runs the real Debian docker-registry with conformance's
// registry.yml on a free loopback port and a private storage directory.
func startRegistry(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s missing (Debian package docker-registry): %v", bin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "../registry.yml")
	cmd.Env = append(os.Environ(),
		"REGISTRY_HTTP_ADDR="+addr,
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="+filepath.Join(t.TempDir(), "storage"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; i < 100; i++ {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("docker-registry on %s never answered:\n%s", addr, logs.String())
	return ""
}

func smallImages(t *testing.T, marker string) []*builtImage {
	t.Helper()
	spec, err := parseSpec([]byte(fmt.Sprintf(`
[layer.shared]
[[layer.shared.entry]]
kind = "file"
path = "/etc/shared"
content = "shared\n"

[[image]]
refs = ["registry.k8s.io/e2e-test-images/tiny:1", "docker.io/library/tiny"]
layers = ["shared"]
[image.config]
cmd = ["sh"]

[[image]]
refs = ["gcr.io/k8s-staging-cri-tools/tiny-2:latest"]
layers = ["shared"]
[[image.entry]]
kind = "file"
path = "/marker"
content = %q
[image.config]
user = "1002"
`, marker)))
	if err != nil {
		t.Fatal(err)
	}
	images, err := buildAll(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return images
}

func TestPushToRealRegistry(t *testing.T) {
	addr := startRegistry(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newClient := func() *registryClient {
		reg, err := newRegistryClient(addr)
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}

	steps := []struct {
		name          string
		marker        string
		force         bool
		pushed, fresh int
	}{
		{"first push", "a", false, 3, 0},
		{"unchanged", "a", false, 0, 3},
		{"one image changed", "b", false, 1, 2},
		{"forced", "b", true, 3, 0},
	}
	for _, st := range steps {
		images := smallImages(t, st.marker)
		s, err := pushAll(newClient(), images, st.force, log)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if s.pushed != st.pushed || s.upToDate != st.fresh || s.failed != 0 {
			t.Errorf("%s: %+v, want %d pushed, %d up to date", st.name, s, st.pushed, st.fresh)
		}
	}

	// The registry serves what was built, under the mapped names.
	images := smallImages(t, "b")
	reg := newClient()
	for _, img := range images {
		for _, ref := range img.refs {
			got, err := reg.manifestDigest(ref.Repo, ref.Tag)
			if err != nil || got != img.digest {
				t.Errorf("%s: registry has %q (%v), want %s", ref.Original, got, err, img.digest)
			}
		}
	}
	if got, _ := reg.manifestDigest("docker.io/library/tiny", "latest"); got == "" {
		t.Error("short name docker.io/library/tiny was not pushed as docker.io/library/tiny:latest")
	}
	l := images[1].layers[0]
	resp, err := http.Get(fmt.Sprintf("http://%s/v2/gcr.io/k8s-staging-cri-tools/tiny-2/blobs/%s", addr, l.digest))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(body, l.blob) {
		t.Errorf("shared layer read back differs (%s, %d bytes)", resp.Status, len(body))
	}
}
