package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
	"github.com/crib-dev/crib/internal/golden"
)

func TestKubeletYAML(t *testing.T) {
	rootless := kubeletHost{Socket: "/run/user/1000/crib/crib.sock", CgroupDriver: "cgroupfs", CgroupV1: true, Rootless: true, UserNamespaces: true,
		StaticPods: "/home/ann/.config/crib/manifests", PodLogs: "/home/ann/.local/share/crib/pod-logs", KubeletRoot: "/home/ann/.local/share/crib/kubelet"}
	rootful := kubeletHost{Socket: "/run/crib/crib.sock", CgroupDriver: "systemd",
		StaticPods: "/etc/kubernetes/manifests", PodLogs: "/var/log/pods", KubeletRoot: "/var/lib/kubelet"}
	tests := []struct {
		golden string
		yaml   string
	}{
		{"kubelet-rootless-v1.yaml", kubeletYAML(rootless)},
		{"kubelet-rootless-v1-standalone.yaml", standaloneAuth(kubeletYAML(rootless))},
		{"kubelet-rootful-v2.yaml", kubeletYAML(rootful)},
		{"kubelet-rootless-v1-client-ca.yaml", kubeletYAML(withCA(rootless, "/home/ann/pki/ca.crt"))},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) { golden.Check(t, filepath.Join("testdata", tt.golden), []byte(tt.yaml)) })
	}
}

func TestKubeletPaths(t *testing.T) {
	cfg := config.Default(testEnv).Finalize()
	m, logs, root := kubeletPaths(cfg, testEnv)
	for _, p := range []string{m, logs, root} {
		if !strings.HasPrefix(p, testEnv.Home+"/") {
			t.Errorf("%s is not the user's: a rootless kubelet's directories must be", p)
		}
	}
	m, logs, root = kubeletPaths(cfg, config.Env{UID: 0, Home: "/root"})
	if m != "/etc/kubernetes/manifests" || logs != "/var/log/pods" || root != "/var/lib/kubelet" {
		t.Errorf("rootful paths: %s %s %s", m, logs, root)
	}
}

func TestWriteKubeletConfigMakesItsDirectories(t *testing.T) {
	dir := t.TempDir()
	h := kubeletHost{StaticPods: filepath.Join(dir, "m"), PodLogs: filepath.Join(dir, "l"), KubeletRoot: filepath.Join(dir, "k")}
	file := filepath.Join(dir, "conf", "kubelet.yaml")
	var out bytes.Buffer
	if err := writeKubeletConfig(&out, "x: 1\n", true, file, testEnv, h); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(file); err != nil || string(data) != "x: 1\n" {
		t.Fatalf("file: %q %v", data, err)
	}
	for _, d := range []string{h.StaticPods, h.PodLogs, h.KubeletRoot} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			t.Errorf("%s not made: %v", d, err)
		}
	}
}

func withCA(h kubeletHost, ca string) kubeletHost {
	h.ClientCA = ca
	return h
}
