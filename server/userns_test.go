package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/server/rootless"
)

// The kubelet reads its user-namespace range as user kubelet's
// subordinate ids: crib's copy of /etc gets them, the host's stays.
func TestWriteKubeletEntries(t *testing.T) {
	etc := t.TempDir()
	host := filepath.Join(etc, rootless.HostEntriesDir)
	os.Mkdir(host, 0o755)
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"subuid": "ann:100000:65536\nkubelet:1:2\n",
		"subgid": "ann:100000:65536\n",
	}
	for name, content := range files {
		os.WriteFile(filepath.Join(host, name), []byte(content), 0o644)
		if err := os.Symlink(filepath.Join(host, name), filepath.Join(etc, name)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // a restarted crib writes them again, the same
		if err := writeKubeletEntries(etc, 110); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nkubelet:x:65534:65534:crib: the kubelet's user-namespace range:/nonexistent:/usr/sbin/nologin\n",
		"subuid": "ann:100000:65536\nkubelet:65536:7208960\n",
		"subgid": "ann:100000:65536\nkubelet:65536:7208960\n",
	}
	for name, w := range want {
		got, _ := os.ReadFile(filepath.Join(etc, name))
		if string(got) != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
		if h, _ := os.ReadFile(filepath.Join(host, name)); string(h) != files[name] {
			t.Errorf("the host's %s changed: %q", name, h)
		}
	}
	if fi, _ := os.Lstat(filepath.Join(etc, "passwd")); fi.Mode()&os.ModeSymlink != 0 || !strings.Contains(fi.Mode().String(), "rw-r--r--") {
		t.Errorf("passwd is %v, want a 0644 file of crib's copy", fi.Mode())
	}
}
