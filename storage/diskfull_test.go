package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	cstorage "go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// TestFullDiskKeepsStoreConsistent puts the store on an 8 MiB tmpfs and
// pulls an image that cannot fit.
func TestFullDiskKeepsStoreConsistent(t *testing.T) {
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v); the full-disk case needs one", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	s := newStore(t, func(o *Options) { o.Root = filepath.Join(root, "crib") })
	ctx := context.Background()
	base, err := s.Pull(ctx, ref("base"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(ctx, ref("huge"), nil, nil); err == nil {
		t.Fatal("pulling 12 MiB into 8 MiB succeeded")
	} else {
		t.Logf("pull on a full disk: %v", err)
	}
	images, err := s.List(ctx, "")
	if err != nil || len(images) != 1 || images[0].ID != base.ID {
		t.Errorf("after the failed pull, List = %v, %v; want only base", images, err)
	}
	layers, err := s.store.Layers()
	if err != nil || len(layers) != 1 {
		t.Errorf("after the failed pull, %d layers (%v); want base's one", len(layers), err)
	}
	report, err := s.store.Check(cstorage.CheckEverything())
	if err != nil || len(report.Layers)+len(report.Images)+len(report.Containers) != 0 {
		t.Errorf("store check after the failed pull: %+v, %v", report, err)
	}
	if entries, _ := os.ReadDir(s.tmpDir); len(entries) != 0 {
		t.Errorf("spooled files left behind: %d", len(entries))
	}
	c, err := s.CreateContainer(ctx, "", "after-full", base.ID, "", "")
	if err != nil {
		t.Fatalf("the store is unusable after the failed pull: %v", err)
	}
	if _, err := s.Mount(c.ID); err != nil {
		t.Errorf("Mount after the failed pull: %v", err)
	}
}
