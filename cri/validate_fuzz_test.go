package cri

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzValidate sends arbitrary wire bytes through the request checks that
// run before RunPodSandbox and CreateContainer touch anything: no panic,
// every refusal an InvalidArgument, and an accepted log path always inside
// the pod's log directory.
func FuzzValidate(f *testing.F) {
	pod := mustMarshal(f, &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-1"},
		LogDirectory: "/var/log/pods/default_web_uid-1",
	})
	ctr := mustMarshal(f, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		LogPath:  "app/0.log",
	})
	noName := mustMarshal(f, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "default", Uid: "u"}})
	blankImage := mustMarshal(f, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: " \t"}})
	for _, seed := range []struct {
		pod, ctr []byte
		dir, rel string
	}{
		{pod, ctr, "/var/log/pods/p", "app/0.log"},
		{pod, ctr, "/var/log/pods/p/", "app/../app/1.log"},
		{noName, blankImage, "/var/log/pods/p", "../escape.log"},
		{nil, nil, "", ""},
		{[]byte{0xff, 0x01}, []byte{0x0a, 0x80}, "/d", "/etc/passwd"},
		{pod, ctr, "relative/dir", "a.log"},
		{pod, ctr, "/d", "."},
	} {
		f.Add(seed.pod, seed.ctr, seed.dir, seed.rel)
	}
	f.Fuzz(func(t *testing.T, podBytes, ctrBytes []byte, dir, rel string) {
		podCfg := &runtimeapi.PodSandboxConfig{}
		if proto.Unmarshal(podBytes, podCfg) == nil {
			checkInvalidArgument(t, "validatePodConfig", validatePodConfig(podCfg))
		}
		ctrCfg := &runtimeapi.ContainerConfig{}
		if proto.Unmarshal(ctrBytes, ctrCfg) == nil {
			checkInvalidArgument(t, "validateContainerConfig", validateContainerConfig(ctrCfg))
		}
		full, err := containerLogPath(dir, rel)
		checkInvalidArgument(t, "containerLogPath", err)
		if err != nil || full == "" {
			return
		}
		inside, relErr := filepath.Rel(filepath.Clean(dir), full)
		if relErr != nil || inside == "." || inside == ".." || strings.HasPrefix(inside, "../") {
			t.Fatalf("containerLogPath(%q, %q) = %q, outside the directory", dir, rel, full)
		}
	})
}

func checkInvalidArgument(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && status.Code(toStatus(err)) != codes.InvalidArgument {
		t.Fatalf("%s refused with %v, want InvalidArgument", what, err)
	}
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
