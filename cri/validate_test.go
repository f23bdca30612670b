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

func TestCheckUserns(t *testing.T) {
	ids := func(container, host, length uint32) []*runtimeapi.IDMapping {
		return []*runtimeapi.IDMapping{{ContainerId: container, HostId: host, Length: length}}
	}
	pod := func(u *runtimeapi.UserNamespace) *runtimeapi.NamespaceOption {
		return &runtimeapi.NamespaceOption{UsernsOptions: u}
	}
	kubelet := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: ids(0, 65536, 65536), Gids: ids(0, 65536, 65536)}
	tests := []struct {
		name string
		ns   *runtimeapi.NamespaceOption
		bad  bool
	}{
		{"no options", &runtimeapi.NamespaceOption{}, false},
		{"NODE", pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), false},
		{"POD without mappings (the old default)", pod(&runtimeapi.UserNamespace{}), false},
		{"POD as the kubelet sends it", pod(kubelet), false},
		{"POD as critest sends it", pod(&runtimeapi.UserNamespace{Uids: ids(0, 1000, 100000), Gids: ids(0, 1000, 100000)}), false},
		{"CONTAINER", pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}), true},
		{"TARGET", pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}), true},
		{"two uid mappings", pod(&runtimeapi.UserNamespace{
			Uids: append(ids(0, 1000, 100000), ids(0, 2000, 100000)...), Gids: append(ids(0, 1000, 100000), ids(0, 2000, 100000)...)}), true},
		{"uids only", pod(&runtimeapi.UserNamespace{Uids: ids(0, 65536, 65536)}), true},
		{"container id 0 unmapped", pod(&runtimeapi.UserNamespace{Uids: ids(1, 1000, 100000), Gids: ids(1, 1000, 100000)}), true},
		{"gid container id 0 unmapped", pod(&runtimeapi.UserNamespace{Uids: ids(0, 1000, 100000), Gids: ids(1, 1000, 100000)}), true},
		{"fewer than 65536 ids", pod(&runtimeapi.UserNamespace{Uids: ids(0, 65536, 1000), Gids: ids(0, 65536, 1000)}), true},
		{"uid and gid lengths differ", pod(&runtimeapi.UserNamespace{Uids: ids(0, 65536, 65536), Gids: ids(0, 65536, 131072)}), true},
		{"with the node's network", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, UsernsOptions: kubelet}, true},
		{"with the node's pid namespace", &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE, UsernsOptions: kubelet}, true},
		{"with the node's ipc namespace", &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE, UsernsOptions: kubelet}, true},
		{"NODE with the node's network", &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE,
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}, false},
	}
	for _, tc := range tests {
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "n", Namespace: "ns", Uid: "u"},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tc.ns}},
		}
		err := validatePodConfig(cfg)
		if tc.bad != (err != nil) || (err != nil && status.Code(toStatus(err)) != codes.InvalidArgument) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
