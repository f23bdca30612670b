package storage

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
)

// TestContainerFilesystemOnEveryDriver runs a container filesystem's life
// on each driver this machine offers (native overlay and fuse-overlayfs
// need root and /dev/fuse, which the test host has).
func TestContainerFilesystemOnEveryDriver(t *testing.T) {
	for _, driver := range []string{DriverOverlay, DriverFuseOverlayfs, DriverVFS} {
		t.Run(driver, func(t *testing.T) {
			s := newStore(t, func(o *Options) { o.Driver = driver })
			if got := s.Driver(); got.Name != driver || got.Reason == "" {
				t.Fatalf("Driver() = %+v, want %s with a reason", got, driver)
			}
			containerLifecycle(t, s)
		})
	}
}

func containerLifecycle(t *testing.T, s *Store) {
	ctx := context.Background()
	img, err := s.Pull(ctx, ref("app"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.ImageConfig(ctx, img.ID)
	if err != nil || cfg.Config.User != "www-data" {
		t.Fatalf("ImageConfig = %+v, %v", cfg, err)
	}
	c, err := s.CreateContainer(ctx, "", "app-1", ref("app"), "", "meta")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" || c.Name != "app-1" || c.ImageID != img.ID || c.Metadata != "meta" {
		t.Errorf("CreateContainer = %+v", c)
	}
	if _, err := s.CreateContainer(ctx, "", "app-1", img.ID, "", ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("a second container named app-1: %v, want ErrAlreadyExists", err)
	}
	if _, err := s.CreateContainer(ctx, "", "app-2", "example.test/test/none", "", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a container of an unknown image: %v, want ErrNotFound", err)
	}
	rootfs, err := s.Mount(c.ID)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	for file, want := range map[string]string{"etc/os-release": "NAME=crib-test\n", "app/index.html": "<p>app</p>\n"} {
		if got, err := os.ReadFile(filepath.Join(rootfs, file)); err != nil || string(got) != want {
			t.Errorf("%s in the rootfs = %q, %v", file, got, err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "written"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	bytesUsed, inodes, err := s.ContainerUsage(ctx, c.ID)
	if err != nil || bytesUsed < 1<<20 || inodes < 1 {
		t.Errorf("ContainerUsage = %d bytes, %d inodes, %v; want ≥ 1 MiB and ≥ 1 inode", bytesUsed, inodes, err)
	}
	info, err := s.FsInfo(ctx)
	if err != nil || info.Images.Bytes == 0 || info.Images.Inodes == 0 || info.Containers.Bytes < 1<<20 ||
		info.Images.Mountpoint != s.GraphRoot() {
		t.Errorf("FsInfo = %+v, %v", info, err)
	}
	listed, err := s.ListContainers()
	if err != nil || len(listed) != 1 || listed[0].ID != c.ID {
		t.Errorf("ListContainers = %+v, %v", listed, err)
	}
	// A removed container's name is free before its filesystem is deleted.
	for range 2 {
		if err := s.ReleaseName(c.ID); err != nil {
			t.Fatalf("ReleaseName: %v", err)
		}
	}
	if err := s.ReleaseName("never-existed"); err != nil {
		t.Errorf("ReleaseName of an unknown container: %v", err)
	}
	successor, err := s.CreateContainer(ctx, "", "app-1", img.ID, "", "")
	if err != nil {
		t.Fatalf("a container named app-1 after ReleaseName: %v", err)
	}
	if err := s.DeleteContainer(successor.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount(c.ID); err != nil {
		t.Errorf("Unmount: %v", err)
	}
	if err := s.Unmount(c.ID); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	if err := s.DeleteContainer(c.ID); err != nil {
		t.Fatalf("DeleteContainer: %v", err)
	}
	if err := s.DeleteContainer(c.ID); err != nil {
		t.Errorf("DeleteContainer again: %v", err)
	}
	if _, err := s.Mount(c.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Mount of a deleted container: %v, want ErrNotFound", err)
	}
	if err := s.Remove(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
}

func TestMountLabelIsKept(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img, err := s.Pull(ctx, ref("base"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	label := "system_u:object_r:container_file_t:s0:c1,c2"
	c, err := s.CreateContainer(ctx, "fixed-id-1", "labelled", img.ID, label, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Container(c.ID)
	if err != nil || got.MountLabel != label || got.ID != "fixed-id-1" {
		t.Errorf("Container = %+v, %v", got, err)
	}
}

// A container of a pod with its own user namespace sees the image's files
// owned by the pod's ids: the image's root-owned files belong, on disk, to
// the pod's root (host id 200000 here), on every driver; the image's
// own layers stay as they were.
func TestMappedContainerOwnsItsFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chowning to other ids needs root")
	}
	m := []idmap.Mapping{{ContainerID: 0, HostID: 200000, Count: 65536}}
	for _, driver := range []string{DriverOverlay, DriverVFS} {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t, func(o *Options) { o.Driver = driver })
			img, err := s.Pull(ctx, ref("base"), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateMappedContainer(ctx, "", "mapped", img.ID, "", "", nil, m); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("no uid mapping: %v, want InvalidArgument", err)
			}
			mapped, err := s.CreateMappedContainer(ctx, "", "mapped", img.ID, "", "", m, m)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := s.CreateContainer(ctx, "", "plain", img.ID, "", "")
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				id   string
				want uint32
			}{{mapped.ID, 200000}, {plain.ID, 0}} {
				rootfs, err := s.Mount(tc.id)
				if err != nil {
					t.Fatal(err)
				}
				var st syscall.Stat_t
				if err := syscall.Stat(filepath.Join(rootfs, "etc/os-release"), &st); err != nil {
					t.Fatal(err)
				}
				if st.Uid != tc.want || st.Gid != tc.want {
					t.Errorf("container %s: etc/os-release is %d:%d, want %d", tc.id, st.Uid, st.Gid, tc.want)
				}
				s.Unmount(tc.id)
			}
		})
	}
}
