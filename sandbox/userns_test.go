package sandbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"golang.org/x/sys/unix"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
	"github.com/crib-dev/crib/internal/procfs"
)

func withUserns(cfg *runtimeapi.PodSandboxConfig, host, length uint32) *runtimeapi.PodSandboxConfig {
	ids := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: host, Length: length}}
	cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}
	return cfg
}

func TestPlanUserns(t *testing.T) {
	// crib's maps as host-setup.sh's two ranges make them: 1+65536+131072 ids.
	own := idmap.Map{{ContainerID: 0, HostID: 1001, Count: 1}, {ContainerID: 1, HostID: 100000, Count: 65536}, {ContainerID: 65537, HostID: 500000, Count: 131072}}
	m := &Manager{idMaps: func() (idmap.Map, idmap.Map, error) { return own, own, nil }}
	for _, tc := range []struct {
		name         string
		host, length uint32
		ok           bool
	}{
		{"the kubelet's first pod", 65536, 65536, true},
		{"critest's mapping", 1000, 100000, true},
		{"the last pod that fits", 131072, 65536, true},
		{"one id past crib's range", 131072 + 2, 65536, false},
		{"crib's own user", 0, 65536, false},
	} {
		p, err := m.plan(withUserns(podConfig("u"), tc.host, tc.length))
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.ok && (p.userns == nil || p.userns.uid.Size() != int(tc.length) || p.userns.uid[0] != idmap.Mapping{ContainerID: 0, HostID: int(tc.host), Count: p.userns.uid[0].Count}):
			t.Errorf("%s: plan %+v", tc.name, p.userns)
		case !tc.ok && !errors.Is(err, errdefs.ErrInvalidArgument):
			t.Errorf("%s: got %v, want InvalidArgument", tc.name, err)
		}
	}
	// The kubelet's first pod crosses crib's seam at 65537: two lines.
	if p, err := m.plan(withUserns(podConfig("seam"), 65536, 65536)); err != nil ||
		!slices.Equal(p.userns.gid, idmap.Map{{ContainerID: 0, HostID: 65536, Count: 1}, {ContainerID: 1, HostID: 65537, Count: 65535}}) {
		t.Errorf("across the seam: %+v, %v", p, err)
	}
	if p, err := m.plan(podConfig("node")); err != nil || p.userns != nil {
		t.Errorf("a pod without user-namespace options: %+v, %v", p, err)
	}
}

// TestUserNamespacePod makes a pod in its own user namespace and checks
// the mapping, that the pod's other namespaces (and its PID 1) belong to
// that user namespace, and that Remove leaves nothing.
func TestUserNamespacePod(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	m := newTestManager(t, opts)
	cfg := withUserns(podConfig("userns"), 200000, 65536)
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	sb := mustCreate(t, m, "userns", cfg)
	if !isNamespacePin(sb.UserNSPath) {
		t.Fatalf("no user namespace pin: %+v", sb)
	}
	out, err := exec.Command("nsenter", "--user="+sb.UserNSPath, "--net="+sb.NetNSPath, "--uts="+sb.UTSNSPath, "sh", "-c",
		"cat /proc/self/uid_map /proc/self/gid_map; hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "0 200000 65536 0 200000 65536 userns 0" {
		t.Fatalf("inside the pod's namespaces: %q", out)
	}
	user := nsID(t, sb.UserNSPath)
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath, sb.PIDNSPath} {
		if owner := ownerNS(t, p); owner != user {
			t.Errorf("%s belongs to user namespace %s, not the pod's %s", p, owner, user)
		}
	}
	if got := nsID(t, "/proc/"+strconv.Itoa(sb.ReaperPID)+"/ns/user"); got != user {
		t.Errorf("the reaper runs in user namespace %s, not the pod's %s", got, user)
	}
	if err := m.Remove(context.Background(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if left := mountsBelow(t, opts.RunRoot); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	if procfs.AliveSince(sb.ReaperPID, sb.ReaperStartTime) {
		t.Errorf("the pod's holder %d survived Remove", sb.ReaperPID)
	}
}

// TestUserNamespaceRollback fails a user-namespaced Create at each step
// and checks the holder, the pins and the record are gone.
func TestUserNamespaceRollback(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	m := newTestManager(t, opts)
	injected := errors.New("injected failure")
	for _, s := range m.steps() {
		for _, pid := range []runtimeapi.NamespaceMode{runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER} {
			m.beforeStep = func(name string) error {
				if name == s.name {
					return injected
				}
				return nil
			}
			cfg := withUserns(podConfig("doomed"), 200000, 65536)
			cfg.Linux.SecurityContext.NamespaceOptions.Pid = pid
			if _, err := m.Create(context.Background(), "doomed", cfg, "runc"); !errors.Is(err, injected) {
				t.Fatalf("%s: Create: %v", s.name, err)
			}
			if left := mountsBelow(t, opts.RunRoot); len(left) > 0 {
				t.Errorf("failing at %s (pid %s) left mounts %v", s.name, pid, left)
			}
			if left := liveChildren(t, "catatonit"); len(left) > 0 {
				t.Errorf("failing at %s (pid %s) left %v", s.name, pid, left)
			}
		}
	}
	m.beforeStep = nil
}

// nsID is the namespace's identity as readlink shows it: "user:[4026...]".
func nsID(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// ownerNS is the user namespace that owns the namespace at path
// (NS_GET_USERNS).
func ownerNS(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS on %s: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(st.Ino, 10)
}
