package storage

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.podman.io/storage/types"
)

func TestDriverChoice(t *testing.T) {
	tests := []struct {
		name        string
		driver      string
		storageConf string
		want        string
		reasonHas   string
	}{
		{"auto prefers native overlay", DriverAuto, "", DriverOverlay, "kernel"},
		{"empty means auto", "", "", DriverOverlay, "kernel"},
		{"forced vfs", DriverVFS, "", DriverVFS, "crib"},
		{"forced fuse-overlayfs", DriverFuseOverlayfs, "", DriverFuseOverlayfs, "fuse-overlayfs"},
		{"storage.conf names vfs", DriverAuto, "[storage]\ndriver = \"vfs\"\n", DriverVFS, "storage.conf"},
		{"storage.conf wants a mount program", DriverAuto,
			"[storage]\ndriver = \"overlay\"\n[storage.options.overlay]\nmount_program = \"/usr/bin/fuse-overlayfs\"\n",
			DriverFuseOverlayfs, "storage.conf"},
		{"storage.conf overlay leaves the choice open", DriverAuto, "[storage]\ndriver = \"overlay\"\n", DriverOverlay, "kernel"},
		{"crib's setting beats storage.conf", DriverVFS, "[storage]\ndriver = \"overlay\"\n", DriverVFS, "crib"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var conf string
			if tc.storageConf != "" {
				conf = filepath.Join(t.TempDir(), "storage.conf")
				mustWrite(t, conf, tc.storageConf)
			}
			s := newStore(t, func(o *Options) { o.Driver, o.StorageConf = tc.driver, conf })
			got := s.Driver()
			if got.Name != tc.want || !strings.Contains(got.Reason, tc.reasonHas) {
				t.Errorf("Driver() = %+v, want %s with a reason mentioning %q", got, tc.want, tc.reasonHas)
			}
		})
	}
}

func TestMissingStorageConfIsAnError(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(Options{Root: dir, RunRoot: dir, StorageConf: filepath.Join(dir, "absent.conf")})
	if err == nil {
		t.Fatal("Open accepted a storage.conf that does not exist")
	}
}

func TestWithDriverKeepsOnlyOptionsTheDriverTakes(t *testing.T) {
	base := types.StoreOptions{GraphDriverOptions: []string{
		"overlay.mount_program=/usr/bin/fuse-overlayfs",
		"mount_program=/old/style",
		"overlay.mountopt=nodev",
		"vfs.ignore_chown_errors=true",
		"size=10G",
		"imagestore=/images",
	}}
	tests := []struct {
		driver, mountProg string
		want              []string
	}{
		{"overlay", "", []string{"overlay.mountopt=nodev", "size=10G", "imagestore=/images"}},
		{"overlay", "/bin/fo", []string{"overlay.mountopt=nodev", "size=10G", "imagestore=/images", "overlay.mount_program=/bin/fo"}},
		{"vfs", "", []string{"vfs.ignore_chown_errors=true", "imagestore=/images"}},
	}
	for _, tc := range tests {
		got := withDriver(base, tc.driver, tc.mountProg).GraphDriverOptions
		if !slices.Equal(got, tc.want) {
			t.Errorf("withDriver(%s, %q) options = %v, want %v", tc.driver, tc.mountProg, got, tc.want)
		}
	}
}
