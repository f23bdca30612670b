//go:build integration

package server_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An operator edits registries.conf and sends SIGHUP (systemctl reload):
// the edit is in force for the next pull, without a restart; crictl info
// and crib config name the files.
func TestIntegrationImageConfigReloadOnSIGHUP(t *testing.T) {
	u := lookupTestUser(t)
	d := newDaemon(t, u)
	dir, err := os.MkdirTemp("", "crib-it-conf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	base, err := os.ReadFile("../conformance/registries.conf")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("../conformance/policy.json")
	if err != nil {
		t.Fatal(err)
	}
	regConf, policyPath := filepath.Join(dir, "registries.conf"), filepath.Join(dir, "policy.json")
	entry := "\n[[registry]]\nprefix = \"reload.test\"\nlocation = \"%s\"\ninsecure = true\n"
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// reload.test first leads to a closed port.
	write(regConf, string(base)+strings.Replace(entry, "%s", "127.0.0.1:1", 1))
	write(policyPath, string(policy))
	d.extra = append(d.extra, "--registries-conf", regConf, "--signature-policy", policyPath)
	d.start(t)
	c := d.clients(t)
	ctx := context.Background()
	const image = "reload.test/library/busybox:latest" // 127.0.0.1:5000/docker.io/library/busybox
	pull := func() error {
		_, err := c.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
		return err
	}

	before := inForce(t, d)
	if before.Policy != policyPath || len(before.RegistriesConf) == 0 || before.RegistriesConf[len(before.RegistriesConf)-1] != regConf {
		t.Fatalf("image-config.json after start: %+v, want policy %s and %s read last", before, policyPath, regConf)
	}
	if err := pull(); err == nil {
		t.Fatal("pull through a registries.conf entry leading to a closed port succeeded")
	}
	write(regConf, string(base)+strings.Replace(entry, "%s", "127.0.0.1:5000/docker.io", 1))
	if err := pull(); err == nil {
		t.Fatal("the edit was in force before SIGHUP")
	}

	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	var after imageConfig
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-d.exited:
			t.Fatalf("crib exited on SIGHUP: %v\n%s", err, d.out)
		default:
		}
		if after = inForce(t, d); after.LoadedAt.After(before.LoadedAt) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 20s of SIGHUP:\n%s", d.out)
		}
	}
	if err := pull(); err != nil {
		t.Fatalf("pull after SIGHUP: %v\n%s", err, d.out)
	}

	t.Run("crictl info shows the files in force", func(t *testing.T) {
		st, err := c.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var shown imageConfig
		if err := json.Unmarshal([]byte(st.Info["imageConfig"]), &shown); err != nil {
			t.Fatalf("imageConfig %q: %v", st.Info["imageConfig"], err)
		}
		if shown.Policy != policyPath || !shown.LoadedAt.Equal(after.LoadedAt) || !contains(shown.RegistriesConf, regConf) {
			t.Fatalf("crictl info's imageConfig %+v, want the reloaded %+v", shown, after)
		}
	})

	t.Run("crib config shows the files in force", func(t *testing.T) {
		out, err := u.command(os.Getenv("CRIB_BIN"), "config", "--root", d.root, "--runroot", d.runroot).CombinedOutput()
		if err != nil {
			t.Fatalf("crib config: %v\n%s", err, out)
		}
		for _, want := range []string{"policy.json: " + policyPath, "registries.conf: " + regConf} {
			if !strings.Contains(string(out), want) {
				t.Errorf("crib config lacks %q:\n%s", want, out)
			}
		}
	})
}

type imageConfig struct {
	RegistriesConf []string  `json:"registriesConf"`
	Policy         string    `json:"policy"`
	LoadedAt       time.Time `json:"loadedAt"`
}

func inForce(t *testing.T, d *daemon) imageConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.runroot, "image-config.json"))
	if err != nil {
		t.Fatalf("the daemon published no image configuration: %v", err)
	}
	var c imageConfig
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("image-config.json %q: %v", data, err)
	}
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
