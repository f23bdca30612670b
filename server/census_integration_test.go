//go:build integration

package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// No process outlives its container (issue 19), with cgroups and
// unconfined: containers in the node's PID namespace and in a pod's
// shared one, whose inits fork daemons (double fork) and either keep
// running or exit, are stopped, removed, and removed with their pod while
// the daemons run; each step must end the processes it owns, and at the
// end no process is left in any namespace crib made for them, nor in
// crib's user namespace once crib stopped.

// cgroupMode is one way crib confines pods.
type cgroupMode struct {
	name     string
	confined bool
}

// cgroupModes: a delegated cgroup v1 subtree, and none (crib unconfined,
// where `runc kill --all` cannot find a container's processes).
var cgroupModes = []cgroupMode{{name: "cgroups", confined: true}, {name: "unconfined"}}

// setup returns crib's serve flags for the mode and the cgroups it
// delegated (none when unconfined).
func (m cgroupMode) setup(t *testing.T, u testUser) ([]string, delegatedCgroups) {
	if !m.confined {
		return []string{"--cgroup-manager", "none"}, delegatedCgroups{}
	}
	cg := delegateCgroups(t, u)
	return []string{"--cgroup-parent", cg.parent}, cg
}

func TestIntegrationNoProcessOutlivesContainer(t *testing.T) {
	for _, mode := range cgroupModes {
		t.Run(mode.name, func(t *testing.T) { noProcessOutlives(t, mode) })
	}
}

// censusCase is one container: its marker (the argument of its sleeps,
// unique to the run) and whether its init exits after forking.
type censusCase struct {
	name   string
	marker int
	exits  bool
	id     string
}

func (c *censusCase) script() string {
	daemon := fmt.Sprintf("sh -c 'sleep %d &'", c.marker) // the inner sh exits: a double fork
	if c.exits {
		return daemon
	}
	return fmt.Sprintf("%s; sleep %d & wait", daemon, c.marker)
}

// sleepers is how many of the case's sleeps run: one daemon, and one
// child of a running init.
func (c *censusCase) sleepers() int {
	if c.exits {
		return 1
	}
	return 2
}

func noProcessOutlives(t *testing.T, mode cgroupMode) {
	u := lookupTestUser(t)
	adoptOrphans(t)
	d := newDaemon(t, u)
	flags, cg := mode.setup(t, u)
	d.extra = flags
	d.startWithRegistry(t)
	f := &faultRun{t: t, d: d, u: u, cg: cg}
	f.connect()
	f.pull()
	f.logDir = filepath.Join(u.home, "it-census-logs-"+filepath.Base(d.runroot))
	t.Cleanup(func() { os.RemoveAll(f.logDir) })
	cribNS := namespacesOf(d.childPID(t))
	userNS := cribNS["user"]

	base := 400000 + os.Getpid()%10000*10
	hostPID := []*censusCase{{name: "runs", marker: base + 1}, {name: "forks", marker: base + 2, exits: true}}
	podPID := []*censusCase{{name: "runs", marker: base + 3}, {name: "forks", marker: base + 4, exits: true}}
	hostPIDPod := f.censusPod("host-pid", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}, hostPID)
	nodeIPCPod := f.censusPod("node-ipc", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD, Ipc: runtimeapi.NamespaceMode_NODE}, podPID)

	// Every namespace of every container process that is not crib's own.
	made := map[string]bool{}
	for _, c := range append(slices.Clone(hostPID), podPID...) {
		for _, pid := range sleepersOf(c.marker) {
			for kind, ns := range namespacesOf(pid) {
				if ns != cribNS[kind] {
					made[ns] = true
				}
			}
		}
	}
	t.Logf("%s: %d namespaces made for the containers", mode.name, len(made))

	// Stop of a container whose init exited leaving a daemon behind.
	if _, err := f.c.rs.StopContainer(f.ctx(), &runtimeapi.StopContainerRequest{ContainerId: hostPID[1].id}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	expectNoSleepers(t, "after StopContainer of the host-PID container whose init exited", hostPID[1].marker)
	// Removal of one in a pod's PID namespace (its daemon lives on with
	// the pod's reaper otherwise).
	if _, err := f.c.rs.RemoveContainer(f.ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: podPID[1].id}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	expectNoSleepers(t, "after RemoveContainer in the node-IPC pod", podPID[1].marker)
	// A pod removed while its running container's children run.
	if _, err := f.c.rs.RemovePodSandbox(f.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: hostPIDPod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	expectNoSleepers(t, "after RemovePodSandbox of the host-PID pod", hostPID[0].marker, hostPID[1].marker)
	if _, err := f.c.rs.StopPodSandbox(f.ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: nodeIPCPod}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	expectNoSleepers(t, "after StopPodSandbox of the node-IPC pod", podPID[0].marker)
	if _, err := f.c.rs.RemovePodSandbox(f.ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: nodeIPCPod}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}

	if left := processesIn(made, userNS); len(left) != 0 {
		t.Errorf("%s: processes left in the namespaces crib made for the containers: %v", mode.name, left)
	}
	d.stop(t)
	expectNoProcessInUserNS(t, userNS)
}

// censusPod runs a pod with the namespace options and, in it, each case's
// container, and waits until each has its sleeps.
func (f *faultRun) censusPod(name string, ns *runtimeapi.NamespaceOption, cases []*censusCase) string {
	cfg := faultPodConfig(name, f.logDir, false)
	cfg.Linux.SecurityContext.NamespaceOptions = ns
	r, err := f.c.rs.RunPodSandbox(f.ctx(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		f.t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, f.d.out)
	}
	for _, c := range cases {
		cc := faultContainerConfig(c.name, []string{"sh", "-c", c.script()})
		cc.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: ns}}
		cr, err := f.c.rs.CreateContainer(f.ctx(), &runtimeapi.CreateContainerRequest{PodSandboxId: r.PodSandboxId, Config: cc, SandboxConfig: cfg})
		if err != nil {
			f.t.Fatalf("CreateContainer %s/%s: %v\n%s", name, c.name, err, f.d.out)
		}
		c.id = cr.ContainerId
		if _, err := f.c.rs.StartContainer(f.ctx(), &runtimeapi.StartContainerRequest{ContainerId: c.id}); err != nil {
			f.t.Fatalf("StartContainer %s/%s: %v\n%s", name, c.name, err, f.d.out)
		}
	}
	for _, c := range cases {
		deadline := time.Now().Add(20 * time.Second)
		for len(sleepersOf(c.marker)) != c.sleepers() || (c.exits && f.containerStatus(c.id).GetState() != runtimeapi.ContainerState_CONTAINER_EXITED) {
			if time.Now().After(deadline) {
				f.t.Fatalf("%s/%s: %d sleeps run, want %d (state %v)", name, c.name, len(sleepersOf(c.marker)), c.sleepers(), f.containerStatus(c.id).GetState())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return r.PodSandboxId
}

// sleepersOf lists the live `sleep MARKER` processes on the machine.
func sleepersOf(marker int) []int {
	var out []int
	for _, pid := range allPIDs() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) >= 2 && filepath.Base(args[0]) == "sleep" && args[1] == strconv.Itoa(marker) {
			if s := procState(pid); s != "" && s != "Z" {
				out = append(out, pid)
			}
		}
	}
	return out
}

// expectNoSleepers: the CRI call that just returned ended them all; a
// SIGKILLed process takes a moment to be gone from /proc.
func expectNoSleepers(t *testing.T, when string, markers ...int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []int
		for _, m := range markers {
			left = append(left, sleepersOf(m)...)
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: container processes %v still run", when, left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var nsKinds = []string{"mnt", "pid", "ipc", "net", "uts", "user", "cgroup"}

// namespacesOf maps each kind to pid's namespace ("mnt:[4026…]").
func namespacesOf(pid int) map[string]string {
	out := map[string]string{}
	for _, kind := range nsKinds {
		if link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind)); err == nil {
			out[kind] = link
		}
	}
	return out
}

// processesIn lists the live processes in any of the namespaces. A
// freed namespace's number may name a new one, another crib's on this
// machine: only processes under crib's user namespace count.
func processesIn(namespaces map[string]bool, userNS string) []string {
	var out []string
	for _, pid := range allPIDs() {
		if s := procState(pid); s == "" || s == "Z" || !userNSUnder(pid, userNS) {
			continue
		}
		for _, ns := range namespacesOf(pid) {
			if namespaces[ns] {
				out = append(out, describe(pid))
				break
			}
		}
	}
	return out
}

func describe(pid int) string {
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return fmt.Sprintf("%d %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
}

// expectNoProcessInUserNS: once crib stopped with nothing left, no live
// process is in its user namespace or one nested in it.
func expectNoProcessInUserNS(t *testing.T, userNS string) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := processesUnderUserNS(userNS)
		if len(left) == 0 {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left in crib's user namespace after it stopped: %v", left)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nsGetParent is NS_GET_PARENT, _IO(0xb7, 0x2): the fd of a namespace's
// parent (for a user namespace, the one that made it).
const nsGetParent = 0xb702

// processesUnderUserNS lists the live processes whose user namespace is
// userNS or below it.
func processesUnderUserNS(userNS string) []string {
	var out []string
	for _, pid := range allPIDs() {
		if s := procState(pid); s == "" || s == "Z" {
			continue
		}
		if userNSUnder(pid, userNS) {
			out = append(out, describe(pid))
		}
	}
	return out
}

func userNSUnder(pid int, userNS string) bool {
	path := fmt.Sprintf("/proc/%d/ns/user", pid)
	if link, err := os.Readlink(path); err != nil || link == userNS {
		return err == nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	want := strings.TrimSuffix(strings.TrimPrefix(userNS, "user:["), "]")
	for i := 0; i < 32; i++ {
		parent, err := unix.IoctlRetInt(fd, nsGetParent)
		unix.Close(fd)
		if err != nil {
			return false // the initial namespace, or not ours to see
		}
		fd = parent
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) == nil && strconv.FormatUint(st.Ino, 10) == want {
			unix.Close(fd)
			return true
		}
	}
	unix.Close(fd)
	return false
}
