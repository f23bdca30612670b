package cri

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// withImageVolumes mounts the images vol-a and vol-b read-only.
func withImageVolumes(c *runtimeapi.ContainerConfig) {
	c.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/a", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "vol-a"}},
		{ContainerPath: "/b", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "vol-b"}},
	}
}

// assertNothingLeft checks a failed create left no record, no name
// reservation, no storage and no pod lock entry.
func assertNothingLeft(t *testing.T, e *fakeEnv) {
	t.Helper()
	if list := e.ctrs.List(); len(list) != 0 {
		t.Errorf("container records left: %+v", list)
	}
	e.svc.containerNames.mu.Lock()
	names := len(e.svc.containerNames.names)
	e.svc.containerNames.mu.Unlock()
	if names != 0 {
		t.Errorf("%d container names still reserved", names)
	}
	if left := e.rootfs.left(); left != "" {
		t.Errorf("storage left: %s", left)
	}
	if n := e.svc.podLocks.size(); n != 0 {
		t.Errorf("%d pod lock entries left", n)
	}
}

// TestCreateContainerRollback fails CreateContainer at each dependency
// call and each step in turn and checks that nothing of the container is
// left, then that the same container creates cleanly.
func TestCreateContainerRollback(t *testing.T) {
	profiles := t.TempDir()
	injected := errors.New("injected failure")
	notReadOnly := func(c *runtimeapi.ContainerConfig) { withImageVolumes(c); c.Mounts[1].Readonly = false }
	missingProfile := func(c *runtimeapi.ContainerConfig) {
		withImageVolumes(c)
		c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "missing.json"}
	}
	tests := []struct {
		name string
		op   string // the fake call that fails, "" for none
		edit func(*runtimeapi.ContainerConfig)
		want error
	}{
		{"image status", "rootfs Status", withImageVolumes, injected},
		{"writable layer", "rootfs CreateContainer", withImageVolumes, injected},
		{"mount of the layer", "rootfs Mount", withImageVolumes, injected},
		{"first image volume", "rootfs MountImage:vol-a", withImageVolumes, injected},
		{"second image volume", "rootfs MountImage:vol-b", withImageVolumes, injected},
		{"image volume not read-only", "", notReadOnly, errdefs.ErrInvalidArgument},
		{"spec generation", "", missingProfile, errdefs.ErrInvalidArgument},
		{"runtime create", "containers Create", withImageVolumes, injected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, profiles)
			switch tc.op {
			case "":
			case "containers Create":
				e.ctrs.inject("Create", injected)
			default:
				e.rootfs.inject(tc.op[len("rootfs "):], injected)
			}
			ctx := context.Background()
			req := &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("app", tc.edit)}
			if _, err := e.svc.CreateContainer(ctx, req); !errors.Is(err, tc.want) {
				t.Fatalf("CreateContainer: %v, want %v", err, tc.want)
			}
			assertNothingLeft(t, e)

			// The name is free again and storage works: a retry succeeds.
			e.ctrs.inject("Create", nil)
			e.rootfs.faults = faults{}
			req.Config = ctrCfg("app", withImageVolumes)
			if _, err := e.svc.CreateContainer(ctx, req); err != nil {
				t.Fatalf("retry after the failure: %v", err)
			}
		})
	}
}
