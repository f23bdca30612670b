package sandbox

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/procfs"
)

func TestTwoPodsGetAddressesAndTalk(t *testing.T) {
	needRoot(t)
	m := newTestManager(t, testOptions(t))
	cfgA := podConfig("a")
	cfgA.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}
	cfgA.Linux.Sysctls = map[string]string{"net.ipv4.ping_group_range": "0 2147483647", "kernel.shmmni": "2048"}
	a := mustCreate(t, m, "pod-a", cfgA)
	b := mustCreate(t, m, "pod-b", podConfig("b"))

	_, subnet, _ := net.ParseCIDR("10.88.0.0/16")
	for _, sb := range []*Sandbox{a, b} {
		if ip := net.ParseIP(sb.IP); ip == nil || !subnet.Contains(ip) {
			t.Fatalf("pod %s has IP %q, want one in %s", sb.ID, sb.IP, subnet)
		}
		if sb.State != StateReady || !isNamespacePin(sb.NetNSPath) || !isNamespacePin(sb.IPCNSPath) || !isNamespacePin(sb.UTSNSPath) {
			t.Fatalf("pod %s: state %s, pins %q %q %q", sb.ID, sb.State, sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath)
		}
	}
	if a.IP == b.IP {
		t.Fatalf("both pods got %s", a.IP)
	}

	// A listener in pod a, dialled from pod b.
	var l net.Listener
	if err := inNamespace(a.NetNSPath, nsNet, func() (err error) { l, err = net.Listen("tcp", net.JoinHostPort(a.IP, "8080")); return }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("hello from a"))
			c.Close()
		}
	}()
	var got []byte
	if err := inNamespace(b.NetNSPath, nsNet, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(a.IP, "8080"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("pod b cannot reach pod a: %v", err)
	}
	if string(got) != "hello from a" {
		t.Fatalf("read %q", got)
	}

	// Out of the pod: the gateway, in crib's namespace (the test's).
	gw, err := net.Listen("tcp", "10.88.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	go func() {
		if c, err := gw.Accept(); err == nil {
			c.Close()
		}
	}()
	if err := inNamespace(b.NetNSPath, nsNet, func() error {
		c, err := net.DialTimeout("tcp", gw.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("pod b cannot reach crib's namespace: %v", err)
	}

	t.Run("files", func(t *testing.T) {
		wantResolv := "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
		if s := readFile(t, a.ResolvPath); s != wantResolv {
			t.Errorf("resolv.conf = %q, want %q", s, wantResolv)
		}
		if s := readFile(t, a.HostnamePath); s != "a\n" {
			t.Errorf("hostname file = %q", s)
		}
		if s := readFile(t, a.HostsPath); !strings.Contains(s, a.IP+"\ta\n") || !strings.Contains(s, "127.0.0.1\tlocalhost") {
			t.Errorf("hosts = %q", s)
		}
		var uts unix.Utsname
		if err := inNamespace(a.UTSNSPath, nsUTS, func() error { return unix.Uname(&uts) }); err != nil {
			t.Fatal(err)
		}
		if h := unix.ByteSliceToString(uts.Nodename[:]); h != "a" {
			t.Errorf("hostname in the pod's UTS namespace = %q", h)
		}
	})
	t.Run("shm", func(t *testing.T) {
		var st unix.Statfs_t
		if err := unix.Statfs(a.ShmPath, &st); err != nil {
			t.Fatal(err)
		}
		if st.Type != unix.TMPFS_MAGIC || uint64(st.Blocks)*uint64(st.Bsize) != 64<<20 {
			t.Errorf("shm: type %x, size %d; want tmpfs of 64 MiB", st.Type, uint64(st.Blocks)*uint64(st.Bsize))
		}
	})
	t.Run("sysctls", func(t *testing.T) {
		var ping, shm string
		inNamespace(a.NetNSPath, nsNet, func() error { ping = readFile(t, "/proc/sys/net/ipv4/ping_group_range"); return nil })
		inNamespace(a.IPCNSPath, nsIPC, func() error { shm = readFile(t, "/proc/sys/kernel/shmmni"); return nil })
		if strings.Join(strings.Fields(ping), " ") != "0 2147483647" || strings.TrimSpace(shm) != "2048" {
			t.Errorf("in the pod: ping_group_range %q, shmmni %q", ping, shm)
		}
		own := readFile(t, "/proc/sys/net/ipv4/ping_group_range")
		if strings.Join(strings.Fields(own), " ") == "0 2147483647" {
			t.Errorf("the pod's sysctl leaked into crib's namespace")
		}
	})
	t.Run("stats", func(t *testing.T) {
		// A process in pod a's network namespace, as a container would be.
		sleeper := exec.Command("nsenter", "--net="+a.NetNSPath, "--ipc="+a.IPCNSPath, "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
		var s *runtimeapi.PodSandboxStats
		deadline := time.Now().Add(5 * time.Second)
		for {
			var err error
			if s, err = m.Stats(context.Background(), a.ID); err != nil {
				t.Fatal(err)
			}
			// Until nsenter has joined and exec'd (a process caught mid-exec
			// has no memory yet), and processes of the subtests before (the
			// listener) have gone.
			settled := s.Linux.Process.ProcessCount.Value == 1 && s.Linux.Memory.WorkingSetBytes.GetValue() > 0
			if settled || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		l := s.Linux
		if s.Attributes.Id != a.ID || l.Process.ProcessCount.Value != 1 || l.Memory.WorkingSetBytes.Value == 0 || l.Cpu.UsageCoreNanoSeconds == nil {
			t.Errorf("stats without cgroups: %v", s)
		}
		if l.Network.DefaultInterface == nil || l.Network.DefaultInterface.Name != "eth0" || l.Network.DefaultInterface.RxBytes.Value == 0 {
			t.Errorf("network stats: %v", l.Network)
		}
		all, err := m.ListStats(context.Background(), nil)
		if err != nil || len(all) != 2 {
			t.Errorf("ListStats: %d, %v", len(all), err)
		}
	})
	t.Run("network counters", func(t *testing.T) {
		// The pods talked above: eth0 has received and sent packets.
		got, err := m.NetworkCounters(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Name != "eth0" || got[0].RxPackets == 0 || got[0].TxPackets == 0 || got[0].RxBytes == 0 {
			t.Errorf("counters of pod a: %+v", got)
		}
		if _, err := m.NetworkCounters(context.Background(), "no-such-pod"); !errdefs.IsNotFound(err) {
			t.Errorf("unknown pod: %v, want ErrNotFound", err)
		}
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCreateRefuses(t *testing.T) {
	needRoot(t)
	cases := []struct {
		name     string
		rootless bool
		edit     func(*runtimeapi.PodSandboxConfig)
		want     error
		mention  string
	}{
		{"non-namespaced sysctl", false, func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"vm.swappiness": "1"} }, errdefs.ErrInvalidArgument, "vm.swappiness"},
		{"uts sysctl", false, func(c *runtimeapi.PodSandboxConfig) { c.Linux.Sysctls = map[string]string{"kernel.hostname": "x"} }, errdefs.ErrInvalidArgument, "kernel.hostname"},
		{"net sysctl on host network", false, func(c *runtimeapi.PodSandboxConfig) {
			hostNetwork(c)
			c.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, errdefs.ErrInvalidArgument, "host network"},
		{"unknown net sysctl", false, func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.ipv4.no_such_thing": "1"}
		}, errdefs.ErrInvalidArgument, "net.ipv4.no_such_thing"},
		{"privileged host port rootless", true, func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{HostPort: 80, ContainerPort: 80}}
		}, errdefs.ErrPermissionDenied, "net.ipv4.ip_unprivileged_port_start"},
		{"sctp host port", false, func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: runtimeapi.Protocol_SCTP}}
		}, errdefs.ErrInvalidArgument, "SCTP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.Rootless, opts.UnprivilegedPortStart = tc.rootless, 1024
			m := newTestManager(t, opts)
			cfg := podConfig("bad")
			tc.edit(cfg)
			_, err := m.Create(context.Background(), "bad", cfg, "")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.mention)
			}
			if left := filesBelow(t, filepath.Join(opts.RunRoot, "sandboxes")); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	t.Run("duplicate id", func(t *testing.T) {
		m := newTestManager(t, testOptions(t))
		mustCreate(t, m, "dup", hostNetwork(podConfig("dup")))
		if _, err := m.Create(context.Background(), "dup", hostNetwork(podConfig("dup")), ""); !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestHostPortsGoToPortmapAndParent(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	ports := &recordingPorts{}
	opts.HostPorts, opts.Rootless, opts.UnprivilegedPortStart = ports, true, 1024
	m := newTestManager(t, opts)
	cfg := podConfig("web")
	cfg.PortMappings = []*runtimeapi.PortMapping{
		{HostPort: 18080, ContainerPort: 80, Protocol: runtimeapi.Protocol_TCP},
		{HostPort: 15353, ContainerPort: 53, Protocol: runtimeapi.Protocol_UDP, HostIp: "127.0.0.1"},
		{ContainerPort: 9090}, // no host port: nothing to forward
	}
	sb := mustCreate(t, m, "web", cfg)
	want := []PortMapping{
		{Protocol: "tcp", HostPort: 18080, PodIP: sb.IP, ContainerPort: 80},
		{Protocol: "udp", HostIP: "127.0.0.1", HostPort: 15353, PodIP: sb.IP, ContainerPort: 53},
	}
	if got := ports.exposed["web"]; !equalPorts(got, want) {
		t.Fatalf("exposed %+v, want %+v", got, want)
	}
	rules := strings.Join(podRules(t, sb.ID), "\n")
	// portmap's DNAT rules live in a per-pod chain the tagged rules jump to.
	for _, r := range natRules(t) {
		if f := strings.Fields(r); len(f) > 1 && strings.HasPrefix(f[1], "CNI-DN-") && strings.Contains(rules, "-j "+f[1]) {
			rules += "\n" + r
		}
	}
	for _, frag := range []string{"--dports 18080", "--dports 15353", "--to-destination " + sb.IP + ":80", "--to-destination " + sb.IP + ":53"} {
		if !strings.Contains(rules, frag) {
			t.Errorf("portmap rules lack %q:\n%s", frag, rules)
		}
	}
	if err := m.Stop(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := ports.exposed["web"]; ok || len(ports.unexposed) == 0 {
		t.Errorf("Stop did not unexpose: %+v", ports)
	}
	if left := podRules(t, sb.ID); len(left) > 0 {
		t.Errorf("rules left after Stop: %v", left)
	}
}

func equalPorts(a, b []PortMapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStopAndRemoveAreIdempotent(t *testing.T) {
	needRoot(t)
	opts := testOptions(t)
	m := newTestManager(t, opts)
	cfg := podConfig("idem")
	cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	sb := mustCreate(t, m, "idem", cfg)
	ctx := context.Background()
	for i := range 2 {
		if err := m.Stop(ctx, "idem"); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	got, err := m.Get("idem")
	if err != nil || got.State != StateNotReady || got.IP != "" {
		t.Fatalf("after stop: %+v, %v", got, err)
	}
	if procfs.AliveSince(sb.ReaperPID, sb.ReaperStartTime) {
		t.Error("reaper survived Stop")
	}
	if n := len(leaseFiles(t, m)); n != 0 {
		t.Errorf("%d leases after Stop", n)
	}
	for i := range 2 {
		if err := m.Remove(ctx, "idem"); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if err := m.Stop(ctx, "idem"); err != nil {
		t.Fatalf("stop after remove: %v", err)
	}
	if _, err := m.Get("idem"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after remove: %v", err)
	}
	if ms := mountsBelow(t, opts.RunRoot); len(ms) > 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if fs := append(filesBelow(t, filepath.Join(opts.RunRoot, "sandboxes")), filesBelow(t, filepath.Join(opts.Root, "sandboxes"))...); len(fs) > 0 {
		t.Errorf("files left: %v", fs)
	}
	if err := m.Remove(ctx, "never-existed"); err != nil {
		t.Errorf("remove of an unknown pod: %v", err)
	}
}

func TestSharedPIDNamespaceGetsReaper(t *testing.T) {
	needRoot(t)
	m := newTestManager(t, testOptions(t))
	shared := podConfig("shared")
	shared.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	sb := mustCreate(t, m, "shared", shared)
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(sb.ReaperPID) + "/cmdline")
	if !strings.Contains(string(cmdline), "catatonit") {
		t.Fatalf("reaper pid %d runs %q", sb.ReaperPID, cmdline)
	}
	theirs, _ := os.Readlink(sb.PIDNSPath)
	ours, _ := os.Readlink("/proc/self/ns/pid")
	if theirs == "" || theirs == ours {
		t.Fatalf("reaper pid namespace %q, ours %q", theirs, ours)
	}
	plain := mustCreate(t, m, "plain", hostNetwork(podConfig("plain")))
	if plain.ReaperPID != 0 || plain.PIDNSPath != "" {
		t.Fatalf("a pod without a shared PID namespace got a reaper: %+v", plain)
	}
}
