package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cgroups bool
		source  string
	}{
		{"proc", false, "proc"},
		{"cgroup", true, "cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cgroups)
			e.opts.RootfsUsage = fakeLayer
			e.m = e.newManager()
			ctx := context.Background()
			o := e.createOptions("stats", config("stats", "sh", "-c", "yes >/dev/null & x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 1000"))
			if _, err := e.m.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			if err := e.m.Start(ctx, "stats"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			u, err := e.m.Usage(ctx, "stats")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("usage: %+v", u)
			if u.Source != tc.source || u.CPUUsageNs == 0 || u.MemoryWorkingSet == 0 || u.MemoryRSS == 0 || u.PageFaults == 0 || u.Pids < 2 {
				t.Errorf("usage %+v: want source %s and non-zero figures", u, tc.source)
			}
			if _, err := e.m.Stats(ctx, "stats"); err != nil { // first sample: no rate yet
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			st, err := e.m.Stats(ctx, "stats")
			if err != nil {
				t.Fatal(err)
			}
			if st.GetAttributes().GetId() != "stats" || st.GetCpu().GetTimestamp() == 0 ||
				st.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || st.GetCpu().GetUsageNanoCores().GetValue() == 0 ||
				st.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
				st.GetWritableLayer().GetUsedBytes().GetValue() != 12345 || st.GetWritableLayer().GetInodesUsed().GetValue() != 67 {
				t.Errorf("stats: %v", st)
			}
		})
	}
}

// TestStatsExited: an exited container still gets a full, zero answer.
func TestStatsExited(t *testing.T) {
	e := newEnv(t, false)
	e.run("stats-done", "true")
	e.waitState("stats-done", StateExited, 10*time.Second)
	st, err := e.m.Stats(context.Background(), "stats-done")
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCpu() == nil || st.GetMemory() == nil || st.GetWritableLayer() == nil || st.GetCpu().GetTimestamp() == 0 {
		t.Errorf("stats of an exited container: %v", st)
	}
}

func TestUpdate(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	c := e.run("update", "sleep", "1000")
	limit := int64(64 << 20)
	if err := e.m.Update(ctx, c.ID, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit, CpuShares: 512}); err != nil {
		t.Fatal(err)
	}
	got := readCgroupFile(t, "memory", e.cg.ContainerPath(e.pod, c.ID), "memory.limit_in_bytes")
	if got != strconv.FormatInt(limit, 10) {
		t.Errorf("memory.limit_in_bytes = %s, want %d", got, limit)
	}
	c, _ = e.m.Get(c.ID)
	if c.Config.GetLinux().GetResources().GetMemoryLimitInBytes() != limit {
		t.Errorf("record keeps resources %v", c.Config.GetLinux().GetResources())
	}
	if err := e.m.Update(ctx, "nope", &runtimeapi.LinuxContainerResources{}); !errdefs.IsNotFound(err) {
		t.Errorf("update of an unknown container: %v", err)
	}
}

func TestUpdateWithoutCgroup(t *testing.T) {
	e := newEnv(t, false)
	c := e.run("update-nocg", "sleep", "1000")
	err := e.m.Update(context.Background(), c.ID, &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20})
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update without a cgroup: %v", err)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newEnv(t, true)
	cfg := config("oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
	cfg.Linux.Resources.MemoryLimitInBytes = 16 << 20
	e.create("oom", cfg)
	if err := e.m.Start(context.Background(), "oom"); err != nil {
		t.Fatal(err)
	}
	c := e.waitState("oom", StateExited, 20*time.Second)
	if c.Reason != ReasonOOMKilled || c.ExitCode != 137 {
		t.Errorf("reason %q code %d, want OOMKilled 137", c.Reason, c.ExitCode)
	}
}

// readCgroupFile reads a v1 cgroup file of the container; the path is
// relative to the test's own cgroup, as runc resolved it.
func readCgroupFile(t *testing.T, controller, path, file string) string {
	t.Helper()
	own := ownCgroups(t)[controller]
	if !filepath.IsAbs(path) {
		path = filepath.Join(own, path)
	}
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, path, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// TestStatsAfterRestart: a restarted crib (a new Manager on the same
// roots) still measures the writable layer of the containers it
// re-attaches.
func TestStatsAfterRestart(t *testing.T) {
	e := newEnv(t, false)
	e.opts.RootfsUsage = fakeLayer
	e.m = e.newManager()
	ctx := context.Background()
	o := e.createOptions("layer", config("layer", "sleep", "1000"))
	if _, err := e.m.Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(ctx, "layer"); err != nil {
		t.Fatal(err)
	}
	e.m.Close()
	e.m = e.newManager()
	if _, err := e.m.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Stats(ctx, "layer")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetWritableLayer(); got.GetUsedBytes().GetValue() != 12345 || got.GetInodesUsed().GetValue() != 67 {
		t.Errorf("writable layer after a restart: %v, want 12345 bytes, 67 inodes", got)
	}
}

// fakeLayer is a writable-layer measure that knows only container "layer"
// and "stats".
func fakeLayer(_ context.Context, id string) (uint64, uint64, error) {
	if id != "layer" && id != "stats" {
		return 0, 0, errdefs.ErrNotFound
	}
	return 12345, 67, nil
}
