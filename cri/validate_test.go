package cri

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestValidatePodConfig(t *testing.T) {
	ok := &runtimeapi.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u"}
	tests := []struct {
		name string
		cfg  *runtimeapi.PodSandboxConfig
		bad  bool
	}{
		{"nil", nil, true},
		{"no metadata", &runtimeapi.PodSandboxConfig{}, true},
		{"no uid", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "n", Namespace: "ns"}}, true},
		{"complete", &runtimeapi.PodSandboxConfig{Metadata: ok}, false},
	}
	for _, tc := range tests {
		err := validatePodConfig(tc.cfg)
		if tc.bad != (err != nil) || (err != nil && status.Code(toStatus(err)) != codes.InvalidArgument) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestValidateContainerConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  *runtimeapi.ContainerConfig
		bad  bool
	}{
		{"nil", nil, true},
		{"no name", &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: "busybox"}}, true},
		{"no image", &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}}, true},
		{"blank image", &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: " "}}, true},
		{"complete", &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: "busybox"}}, false},
	}
	for _, tc := range tests {
		err := validateContainerConfig(tc.cfg)
		if tc.bad != (err != nil) || (err != nil && status.Code(toStatus(err)) != codes.InvalidArgument) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestContainerLogPath(t *testing.T) {
	tests := []struct {
		dir, rel, want string
		bad            bool
	}{
		{"/logs", "c.log", "/logs/c.log", false},
		{"/logs", "c/0.log", "/logs/c/0.log", false},
		{"/logs", "", "", false},
		{"", "c.log", "", false},
		{"/logs", "../etc/passwd", "", true},
		{"/logs", "a/../../x", "", true},
		{"/logs", "/abs.log", "", true},
	}
	for _, tc := range tests {
		got, err := containerLogPath(tc.dir, tc.rel)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("%q + %q = %q, %v", tc.dir, tc.rel, got, err)
		}
	}
}

func TestNameIndex(t *testing.T) {
	n := newNameIndex()
	if err := n.reserve("a", "id1"); err != nil {
		t.Fatal(err)
	}
	if err := n.reserve("a", "id1"); err != nil {
		t.Fatalf("re-reserving for the same id: %v", err)
	}
	err := n.reserve("a", "id2")
	if !errdefs.IsAlreadyExists(err) || status.Code(toStatus(err)) != codes.AlreadyExists {
		t.Fatalf("taken name: %v", err)
	}
	n.release("a")
	if err := n.reserve("a", "id2"); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestValidateStdio(t *testing.T) {
	tests := []struct {
		name                       string
		tty, stdin, stdout, stderr bool
		valid                      bool
	}{
		{"stdout", false, false, true, false, true},
		{"stdin only", false, true, false, false, true},
		{"terminal with stdin and stdout", true, true, true, false, true},
		{"terminal and stderr", true, false, true, true, false},
		{"no stream", false, false, false, false, false},
		{"terminal with no stream", true, false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateStdio(tt.tty, tt.stdin, tt.stdout, tt.stderr)
			if tt.valid && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.valid && status.Code(toStatus(err)) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
}
