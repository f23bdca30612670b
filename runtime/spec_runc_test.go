package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestGeneratedSpecRunsUnderRunc runs generated specs with the real runc
// and checks, from inside the container, what each spec promised: identity
// and groups, hostname, capabilities, seccomp, no_new_privs, the read-only
// rootfs, a read-only host mount, a device and the pod files. The rootful
// case joins pinned pod namespaces; the rootless case runs runc inside a
// user namespace, as crib does, with the pod on the host's network, IPC and
// UTS namespaces, so proc, sysfs and mqueue must be bound rather than
// mounted and the device bind-mounted rather than created.
func TestGeneratedSpecRunsUnderRunc(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run runc and make user namespaces with any mapping")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed")
	}
	host, err := ProbeHost()
	if err != nil {
		t.Fatal(err)
	}
	host.RecursiveReadOnly = false // runc 1.1 knows no "rro"
	for _, tc := range []struct {
		name       string
		rootless   bool
		privileged bool
	}{
		{name: "rootful"},
		{name: "rootless", rootless: true},
		{name: "rootful privileged", privileged: true},
		{name: "rootless privileged", rootless: true, privileged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := runcProbeInput(t, host, tc.rootless)
			want := map[string]string{
				"ids":        "1000 1000 1000 1234 50000", // uid, gid, groups: passwd gid, requested, /etc/group (Merge)
				"Seccomp":    "2",
				"NoNewPrivs": "1",
				"CapBnd":     capMask(t, without(defaultCapabilities, []string{"CAP_NET_RAW"})),
				"rootfs":     "ro",
				"data":       "ro",
				"flag":       "flag",
				"hosts":      "127.0.0.1 localhost web-0",
				"device":     "ok",
				"proc":       "ok",
			}
			if !tc.rootless {
				want["hostname"] = "web-0" // the rootless pod shares the host's UTS namespace
			}
			if tc.privileged {
				in.Sandbox.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
				in.Config.Linux.SecurityContext.Privileged = true
				want["Seccomp"] = "0"
				want["CapBnd"] = capMask(t, host.BoundingCaps)
			}
			out := runSpec(t, runc, in)
			got := keyValues(out)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q\nfull output:\n%s", k, got[k], v, out)
				}
			}
		})
	}
}

// runcProbeScript prints what the test checks, one key=value per line.
const runcProbeScript = `echo "ids=$(id -u) $(id -g) $(id -G)"; echo "hostname=$(hostname)"; ` +
	`grep -E '^(Seccomp|CapBnd|NoNewPrivs):' /proc/self/status | tr -d ' \t'; ` +
	`if touch /probe 2>/dev/null; then echo rootfs=rw; else echo rootfs=ro; fi; ` +
	`if touch /data/probe 2>/dev/null; then echo data=rw; else echo data=ro; fi; ` +
	`echo "flag=$(cat /data/flagfile)"; echo "hosts=$(cat /etc/hosts)"; ` +
	`if echo x >/dev/sink; then echo device=ok; fi; ` +
	`if grep -q '^Name:' /proc/1/status; then echo proc=ok; fi`

func runcProbeInput(t *testing.T, host HostInfo, rootless bool) SpecInput {
	t.Helper()
	td := testdataDir(t)
	id := fmt.Sprintf("crib-spec-test-%d-%t", os.Getpid(), rootless)
	pod := t.TempDir()
	for name, content := range map[string]string{"hosts": "127.0.0.1 localhost web-0\n", "resolv.conf": "nameserver 127.0.0.1\n", "hostname": "web-0\n"} {
		if err := os.WriteFile(filepath.Join(pod, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(pod, "shm"), 0o1777); err != nil {
		t.Fatal(err)
	}
	ns := PodNamespaces{Network: NamespacePath{Host: true}, IPC: NamespacePath{Host: true}, UTS: NamespacePath{Host: true}}
	// Relative: runc nests it under the test's own cgroup of each
	// controller, so no cgroup outside ours is touched.
	cgroup := id
	if !rootless {
		ns = pinNamespaces(t)
	} else {
		cgroup = "" // a rootless crib without delegation: no limits, no cgroup
	}
	return SpecInput{
		ID: id, SandboxID: "pod1",
		RootfsPath: busyboxRootfs(t, filepath.Join(td, "rootfs/basic/etc")),
		Namespaces: ns,
		PodFiles: PodFiles{
			Hosts: filepath.Join(pod, "hosts"), ResolvConf: filepath.Join(pod, "resolv.conf"),
			Hostname: filepath.Join(pod, "hostname"), Shm: filepath.Join(pod, "shm"),
		},
		CgroupsPath: cgroup,
		Rootless:    rootless,
		Host:        host,
		Sandbox: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Uid: "uid-1", Namespace: "default"},
			Hostname: "web-0",
		},
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "probe"},
			Command:  []string{"sh", "-c", runcProbeScript},
			Mounts:   []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: filepath.Join(td, "host/vol"), Readonly: true}},
			Devices:  []*runtimeapi.Device{{ContainerPath: "/dev/sink", HostPath: "/dev/null", Permissions: "rw"}},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser:          &runtimeapi.Int64Value{Value: 1000},
				SupplementalGroups: []int64{1234},
				ReadonlyRootfs:     true,
				NoNewPrivs:         true,
				Seccomp:            &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
				Capabilities:       &runtimeapi.Capability{DropCapabilities: []string{"NET_RAW"}},
				NamespaceOptions:   &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			}},
		},
	}
}

// runSpec writes the bundle, runs the container to completion and returns
// its output. A rootless input runs runc inside a new user namespace that
// maps ids 0-65535 to themselves: the kernel treats it as any user
// namespace (no mknod, no sysfs for the host's network namespace), so runc
// and the spec take their rootless paths.
func runSpec(t *testing.T, runc string, in SpecInput) string {
	t.Helper()
	spec, err := GenerateSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	command := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, runc, append([]string{"--root", root}, args...)...)
		if in.Rootless {
			ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}}
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags: syscall.CLONE_NEWUSER, UidMappings: ids, GidMappings: ids,
				GidMappingsEnableSetgroups: true,
			}
		}
		return cmd
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = command(context.Background(), "delete", "--force", in.ID).Run() })
	run := command(ctx, "run", "--bundle", bundle, in.ID)
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(run.Args, " "), err, out)
	}
	t.Logf("container output:\n%s", out)
	return string(out)
}

// keyValues reads "key=value" and "key:value" lines.
func keyValues(out string) map[string]string {
	kv := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(out))
	re := regexp.MustCompile(`^([A-Za-z]+)[=:](.*)$`)
	for s.Scan() {
		if m := re.FindStringSubmatch(strings.TrimSpace(s.Text())); m != nil {
			kv[m[1]] = m[2]
		}
	}
	return kv
}

// capMask spells a capability list as /proc/self/status does.
func capMask(t *testing.T, names []string) string {
	t.Helper()
	var mask uint64
	for _, n := range names {
		found := false
		for _, c := range capability.ListKnown() {
			if "CAP_"+strings.ToUpper(c.String()) == n {
				mask |= 1 << uint(c)
				found = true
			}
		}
		if !found {
			t.Fatalf("unknown capability %s", n)
		}
	}
	return fmt.Sprintf("%016x", mask)
}

// busyboxRootfs makes a minimal rootfs from the host's busybox and the
// libraries it links, with the account files of etcDir.
func busyboxRootfs(t *testing.T, etcDir string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed")
	}
	root := t.TempDir()
	files := []string{bb}
	ldd, err := exec.Command("ldd", bb).Output()
	if err == nil { // a static busybox has no libraries to copy
		files = append(files, regexp.MustCompile(`(/[^\s]+\.so[^\s]*)`).FindAllString(string(ldd), -1)...)
	}
	for _, f := range files {
		copyFile(t, f, filepath.Join(root, f))
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "id", "hostname", "grep", "tr", "touch", "cat"} {
		if err := os.Symlink(bb, filepath.Join(root, "bin", applet)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"passwd", "group"} {
		copyFile(t, filepath.Join(etcDir, f), filepath.Join(root, "etc", f))
	}
	return root
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// pinNamespaces creates network, IPC and UTS namespaces pinned by bind
// mounts, the way the sandbox package pins a pod's, and removes them after
// the test.
func pinNamespaces(t *testing.T) PodNamespaces {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	args := []string{}
	for _, ns := range []string{"net", "ipc", "uts"} {
		p := filepath.Join(dir, ns)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		paths[ns] = p
		args = append(args, "--"+ns+"="+p)
	}
	if out, err := exec.Command("unshare", append(args, "true")...).CombinedOutput(); err != nil {
		t.Fatalf("pin namespaces: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for _, p := range paths {
			_ = unix.Unmount(p, unix.MNT_DETACH)
		}
	})
	return PodNamespaces{
		Network: NamespacePath{Path: paths["net"]},
		IPC:     NamespacePath{Path: paths["ipc"]},
		UTS:     NamespacePath{Path: paths["uts"]},
	}
}
