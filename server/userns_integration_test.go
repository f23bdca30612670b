//go:build integration

package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Issue 17, item 4, against a real crib: the root of a pod in its own
// user namespace (hostUsers: false) shows a uid_map other than crib's,
// cannot see or signal another pod's processes, and cannot write crib's
// files or another pod's, even when they are mounted into it.
func TestIntegrationUserNamespaceIsolation(t *testing.T) {
	d, c := startIsolationDaemon(t)
	u := lookupTestUser(t)
	ctx := context.Background()
	st, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.RuntimeHandlers {
		if !h.GetFeatures().GetUserNamespaces() {
			t.Fatalf("handler %q does not advertise user namespaces: %s (crib's range: scripts/host-setup.sh %s)", h.Name, st.Info["userNamespaces"], u.name)
		}
	}

	// Files of crib's user: a directory the other pod writes to, 0755.
	top, err := os.MkdirTemp("", "crib-userns-victim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	victimDir := filepath.Join(top, "victim")
	if err := os.MkdirAll(victimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(victimDir), victimDir} {
		os.Chmod(p, 0o755)
		os.Chown(p, u.uid, u.gid)
	}
	if err := os.WriteFile(filepath.Join(victimDir, "data"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(victimDir, "data"), u.uid, u.gid)

	other := runIn(t, c, isolationPod("userns-victim", nil), sleeper("victim", false))
	victimPID := containerPID(t, c, other)

	ids := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 65536, Length: 65536}}
	podCfg := isolationPod("userns-pod", func(p *runtimeapi.PodSandboxConfig) {
		p.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}
	})
	ctr := sleeper("app", false)
	ctr.Mounts = []*runtimeapi.Mount{
		{HostPath: d.root, ContainerPath: "/crib-root"},
		{HostPath: victimDir, ContainerPath: "/victim"},
	}
	mine := runIn(t, c, podCfg, ctr)

	t.Run("uid_map is the pod's, not crib's", func(t *testing.T) {
		got := strings.Join(strings.Fields(execOut(t, c, mine, "cat", "/proc/self/uid_map")), " ")
		cribs, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", d.childPID(t)))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod uid_map: %q; crib's: %q", got, strings.Join(strings.Fields(string(cribs)), " "))
		// One line, or two where the range crosses a line of crib's map.
		if !strings.HasPrefix(got, "0 65536 ") || got == strings.Join(strings.Fields(string(cribs)), " ") {
			t.Errorf("pod uid_map %q", got)
		}
		if id := execOut(t, c, mine, "id", "-u"); id != "0" {
			t.Errorf("the pod's process runs as %s, want its own root", id)
		}
	})
	t.Run("another pod's processes are out of sight and reach", func(t *testing.T) {
		procs := execOut(t, c, mine, "sh", "-c", "for p in /proc/[0-9]*; do cat $p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done")
		if strings.Contains(procs, "victim") || strings.Count(procs, "sleep 3600") != 1 {
			t.Errorf("the pod sees processes beyond its own:\n%s", procs)
		}
		for _, cmd := range [][]string{{"kill", "-0", strconv.Itoa(victimPID)}, {"cat", fmt.Sprintf("/proc/%d/environ", victimPID)}} {
			if r := execRun(t, c, mine, cmd...); r.ExitCode == 0 {
				t.Errorf("%v succeeded in the user-namespaced pod: %q", cmd, r.Stdout)
			}
		}
	})
	t.Run("crib's and another pod's files are not writable", func(t *testing.T) {
		for _, cmd := range []string{
			"ls /crib-root", "touch /crib-root/x", "echo x >> /victim/data", "touch /victim/new", "rm /victim/data",
		} {
			if r := execRun(t, c, mine, "sh", "-c", cmd); r.ExitCode == 0 {
				t.Errorf("%q succeeded as the pod's root: %q", cmd, r.Stdout)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(victimDir, "data")); string(b) != "mine\n" {
			t.Errorf("the victim's file now holds %q", b)
		}
	})
	t.Run("its own root file system is the pod root's", func(t *testing.T) {
		out := execOut(t, c, mine, "sh", "-c", "touch /etc/written && stat -c '%u %g' /etc/written /bin")
		if out != "0 0\n0 0" && strings.Join(strings.Fields(out), " ") != "0 0 0 0" {
			t.Errorf("owners in the pod's rootfs: %q", out)
		}
	})
	t.Run("a restarted crib keeps the pod and removes it", func(t *testing.T) {
		uidMap := execOut(t, c, mine, "cat", "/proc/self/uid_map")
		pid := containerPID(t, c, mine)
		d.stop(t)
		d.start(t)
		c := d.clients(t)
		if got := containerPID(t, c, mine); got != pid {
			t.Errorf("after the restart the container's pid is %d, was %d", got, pid)
		}
		if got := execOut(t, c, mine, "cat", "/proc/self/uid_map"); got != uidMap {
			t.Errorf("after the restart the pod's uid_map is %q, was %q", got, uidMap)
		}
		list, err := c.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: mine}})
		if err != nil || len(list.Containers) != 1 {
			t.Fatalf("list after the restart: %v %v", list, err)
		}
		if s := list.Containers[0].State; s != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after the restart the container is %v", s)
		}
		podID := list.Containers[0].PodSandboxId
		if _, err := c.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("stop: %v", err)
		}
		if _, err := c.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("remove: %v", err)
		}
		if _, err := c.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); status.Code(err) != codes.NotFound {
			t.Errorf("status of the removed pod: %v, want NotFound", err)
		}
		if got := containerPID(t, c, other); got != victimPID {
			t.Errorf("the other pod's container: pid %d after the restart and removal, was %d", got, victimPID)
		}
	})
}

// runIn runs a pod and one started container in it.
func runIn(t *testing.T, c criClients, pod *runtimeapi.PodSandboxConfig, ctr *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	p, err := c.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod})
	if err != nil {
		t.Fatalf("run pod %s: %v", pod.Metadata.Name, err)
	}
	cr, err := c.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.PodSandboxId, Config: ctr, SandboxConfig: pod})
	if err != nil {
		t.Fatalf("create %s: %v", ctr.Metadata.Name, err)
	}
	if _, err := c.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("start %s: %v", ctr.Metadata.Name, err)
	}
	return cr.ContainerId
}

func execRun(t *testing.T, c criClients, id string, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	r, err := c.rs.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 20})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	return r
}

// containerPID is the container's init pid as crib's verbose status says.
func containerPID(t *testing.T, c criClients, id string) int {
	t.Helper()
	st, err := c.rs.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	info := st.Info["info"]
	i := strings.Index(info, `"pid":`)
	if i < 0 {
		t.Fatalf("no pid in the status info %q", info)
	}
	n := strings.TrimLeft(info[i+len(`"pid":`):], " ")
	end := strings.IndexFunc(n, func(r rune) bool { return r < '0' || r > '9' })
	pid, err := strconv.Atoi(n[:end])
	if err != nil || pid <= 0 {
		t.Fatalf("pid in %q: %v", info, err)
	}
	return pid
}
