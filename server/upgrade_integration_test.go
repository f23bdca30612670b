//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An in-place upgrade: the previous crib runs pods, stops, and the
// current binary starts on the same root and runroot. Containers outlive
// crib, so the new one must re-attach them from the records the old one
// wrote: running, exec-able, measured and removable.

// previousCrib is the commit the upgrade starts from: main when the one
// record codec (internal/record) replaced the two encodings. Move it
// forward when the on-disk format changes again, so the test always
// crosses the latest change.
const previousCrib = "a728aee"

// buildTags are the Makefile's TAGS.
const buildTags = "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

// buildPreviousCrib builds crib at previousCrib from this repository's
// history (git archive: no worktree is registered) into a directory the
// test user can read. CRIB_PREVIOUS_BIN skips the build.
func buildPreviousCrib(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CRIB_PREVIOUS_BIN"); bin != "" {
		return bin
	}
	dir, err := os.MkdirTemp("", "crib-previous-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := fmt.Sprintf("git -C .. archive %s | tar -x -C %s", previousCrib, src)
	if out, err := exec.Command("sh", "-c", archive).CombinedOutput(); err != nil {
		t.Fatalf("extracting crib %s (a clone with history is needed): %v\n%s", previousCrib, err, out)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(goruntime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "crib")
	build := exec.Command(goBin, "build", "-buildvcs=false", "-tags", buildTags, "-o", bin, "./cmd/crib")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building crib %s: %v\n%s", previousCrib, err, out)
	}
	return bin
}

// crictlOut runs crictl as the test user and returns its trimmed
// standard output (its warnings go to standard error).
func (d *daemon) crictlOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := d.userInfo.command(d.crictlArgs(args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s%s\ncrib:\n%s", strings.Join(args, " "), err, out, stderr.String(), d.out)
	}
	return strings.TrimSpace(string(out))
}

// writeConfigs writes CRI configs as JSON files crictl (the test user)
// can read, and returns their paths by name.
func writeConfigs(t *testing.T, msgs map[string]proto.Message) map[string]string {
	t.Helper()
	dir, err := os.MkdirTemp("", "crib-it-upgrade-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	paths := map[string]string{}
	for name, m := range msgs {
		// crictl decodes with encoding/json: the struct tags' names, not
		// protojson's.
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		paths[name] = filepath.Join(dir, name+".json")
		if err := os.WriteFile(paths[name], data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

type upgradePod struct{ pod, ctr string }

func TestIntegrationUpgradeInPlace(t *testing.T) {
	u := lookupTestUser(t)
	prev := buildPreviousCrib(t)
	d := newDaemon(t, u)
	d.bin = prev
	d.startWithRegistry(t)
	d.crictlOut(t, "pull", "busybox")

	logDir := filepath.Join(u.home, "it-logs-"+filepath.Base(d.runroot))
	defer os.RemoveAll(logDir)
	hostPort := freeHostPort(t)
	web := podConfig("upgrade-web", hostPort, logDir)
	shared := podConfig("upgrade-shared", freeHostPort(t), logDir)
	shared.PortMappings = nil
	shared.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD // a reaper as PID 1
	sleeper := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "sleeper"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Command:  []string{"sleep", "100000"},
		LogPath:  "sleeper.log",
	}
	cfg := writeConfigs(t, map[string]proto.Message{"web-pod": web, "web": webContainer(), "shared-pod": shared, "sleeper": sleeper})
	var pods []upgradePod
	for _, p := range [][2]string{{"web-pod", "web"}, {"shared-pod", "sleeper"}} {
		pod := d.crictlOut(t, "runp", cfg[p[0]])
		ctr := d.crictlOut(t, "create", pod, cfg[p[1]], cfg[p[0]])
		d.crictlOut(t, "start", ctr)
		pods = append(pods, upgradePod{pod, ctr})
	}
	if body := httpGetRetry(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); !strings.Contains(body, "hello-from-pod") {
		t.Fatalf("host port under crib %s answered %q", previousCrib, body)
	}

	d.stop(t) // SIGTERM: containers and crib's namespaces stay
	d.cmd, d.bin = nil, ""
	d.startWithRegistry(t)
	d.checkUpgraded(t, pods, hostPort)
}

// checkUpgraded: the current crib re-attached what the previous one ran.
func (d *daemon) checkUpgraded(t *testing.T, pods []upgradePod, hostPort int) {
	data, err := os.ReadFile(filepath.Join(d.runroot, "recovered.json"))
	var rec recoveryRecord
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || len(rec.ContainersReattached) != len(pods) || len(rec.PodsReady) != len(pods) || len(rec.Errors) > 0 {
		t.Errorf("start-up recovery after the upgrade: %+v %v, want %d containers re-attached and pods ready\n%s", rec, err, len(pods), d.out)
	}
	for _, p := range pods {
		var st struct {
			Status struct{ State string } `json:"status"`
		}
		if err := json.Unmarshal([]byte(d.crictlOut(t, "inspectp", p.pod)), &st); err != nil || st.Status.State != "SANDBOX_READY" {
			t.Errorf("pod %s after the upgrade: %q %v", p.pod, st.Status.State, err)
		}
		if err := json.Unmarshal([]byte(d.crictlOut(t, "inspect", p.ctr)), &st); err != nil || st.Status.State != "CONTAINER_RUNNING" {
			t.Errorf("container %s after the upgrade: %q %v", p.ctr, st.Status.State, err)
		}
		if out := d.crictlOut(t, "exec", "-s", p.ctr, "echo", "still-here"); out != "still-here" {
			t.Errorf("exec in %s after the upgrade: %q", p.ctr, out)
		}
	}
	if body := httpGetRetry(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); !strings.Contains(body, "hello-from-pod") {
		t.Errorf("host port after the upgrade answered %q", body)
	}
	c := d.clients(t)
	cs, err := c.rs.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: pods[0].ctr})
	if err != nil || cs.Stats.GetWritableLayer().GetUsedBytes().GetValue() == 0 {
		t.Errorf("the web container's writable layer after the upgrade: %v %v", cs.GetStats().GetWritableLayer(), err)
	}
	for _, p := range pods {
		d.crictlOut(t, "stopp", p.pod)
		d.crictlOut(t, "rmp", p.pod)
	}
	if left := d.crictlOut(t, "ps", "-a", "-q") + d.crictlOut(t, "pods", "-q"); left != "" {
		t.Errorf("left after removing every pod: %q", left)
	}
}
