package runtime

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestIdmapMounts idmaps a tmpfs volume with a pod user namespace (pod 0
// = host 200000), checks its files show the pod's ids, that a volume the
// kernel cannot idmap (an overlay) is bound as it is, and that removing
// the bundle detaches the mounts without touching the volumes.
func TestIdmapMounts(t *testing.T) {
	if os.Geteuid() != 0 || inRootlessChild() {
		t.Skip("needs root")
	}
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 200000, Size: 65536}}
	holder := exec.Command("sleep", "60")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: ids, GidMappings: ids}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()

	tmp := t.TempDir()
	volume, ovl, rootfs := filepath.Join(tmp, "tmpfs"), filepath.Join(tmp, "ovl"), filepath.Join(tmp, "rootfs")
	runRoot := filepath.Join(tmp, "run")
	usernsRoot := UsernsRootDir("/tmp", runRoot)
	bundle := filepath.Join(runRoot, "containers", "ctr1")
	for _, d := range []string{volume, ovl, rootfs, tmp + "/l", tmp + "/u", tmp + "/w", runRoot, filepath.Dir(bundle), bundle} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc-passwd"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(usernsRoot, unix.MNT_DETACH)
		os.Remove(usernsRoot)
	})
	if err := unix.Mount("none", volume, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(volume, unix.MNT_DETACH)
	if err := unix.Mount("overlay", ovl, "overlay", 0, "lowerdir="+tmp+"/l,upperdir="+tmp+"/u,workdir="+tmp+"/w"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(ovl, unix.MNT_DETACH)
	for _, f := range []string{filepath.Join(volume, "data"), filepath.Join(ovl, "data")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &specs.Spec{
		Root: &specs.Root{Path: rootfs},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: volume, Options: []string{"rbind"}},
			{Destination: "/image", Type: "bind", Source: ovl, Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UserNamespace, Path: "/proc/" + strconv.Itoa(holder.Process.Pid) + "/ns/user"}}},
	}
	if err := idmapMounts(bundle, usernsRoot, s, slog.Default()); err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != filepath.Join(usernsRoot, "ctr1") || s.Mounts[0].Source != "proc" || s.Mounts[1].Source == volume || s.Mounts[2].Source != ovl {
		t.Fatalf("want the rootfs bound under %s and only the tmpfs volume idmapped: root %s, mounts %+v", usernsRoot, s.Root.Path, s.Mounts)
	}
	if _, err := os.Stat(filepath.Join(s.Root.Path, "etc-passwd")); err != nil {
		t.Errorf("the rootfs is not bound: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(s.Mounts[1].Source, "data"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 200000 || st.Gid != 200000 {
		t.Errorf("the idmapped volume's file shows %d:%d, want the pod root's 200000:200000", st.Uid, st.Gid)
	}
	if err := removeBundle(bundle, usernsRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Errorf("bundle still there: %v", err)
	}
	for _, f := range []string{filepath.Join(volume, "data"), filepath.Join(rootfs, "etc-passwd")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("removing the bundle reached into a volume or the rootfs: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(usernsRoot, "ctr1")); !os.IsNotExist(err) {
		t.Errorf("the rootfs binding is left: %v", err)
	}
}

// TestIdmapMountsWithoutUserns leaves a spec in crib's namespace alone.
func TestIdmapMountsWithoutUserns(t *testing.T) {
	s := &specs.Spec{Root: &specs.Root{Path: "/somewhere"}, Linux: &specs.Linux{}}
	bundle := t.TempDir()
	if err := idmapMounts(bundle, "/nowhere", s, slog.Default()); err != nil || s.Root.Path != "/somewhere" {
		t.Fatalf("%v, root %s", err, s.Root.Path)
	}
	if _, err := os.Stat(idmapDir(bundle)); !os.IsNotExist(err) {
		t.Errorf("idmap dir made: %v", err)
	}
}
