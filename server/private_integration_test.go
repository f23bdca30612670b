//go:build integration

package server_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// What crib keeps for itself stays the user's alone: the root and the
// runroot are 0700, the CRI socket and the files holding secrets (the
// pull proxy's login) or the configuration in force are 0600, all owned
// by the user who runs crib.
func TestIntegrationStateIsTheUsersAlone(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	d.start(t)
	for _, tc := range []struct {
		path string
		perm os.FileMode
	}{
		{d.root, 0o700},
		{d.runroot, 0o700},
		{d.socket, 0o600},
		{filepath.Join(d.runroot, "pull-proxy.url"), 0o600},
		{filepath.Join(d.runroot, "pull-proxy.last"), 0o600},
		{filepath.Join(d.runroot, "image-config.json"), 0o600},
	} {
		fi, err := os.Lstat(tc.path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != tc.perm || int(st.Uid) != u.uid {
			t.Errorf("%s: mode %v uid %d, want %v uid %d", tc.path, fi.Mode().Perm(), st.Uid, tc.perm, u.uid)
		}
	}
}
