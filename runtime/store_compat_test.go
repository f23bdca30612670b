package runtime

import (
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/golden"
)

// TestEarlierRecordsLoad reads container records written by crib a728aee
// (testdata/records, produced by that commit's encoder): a crib upgraded
// in place must re-attach the containers its predecessor left.
func TestEarlierRecordsLoad(t *testing.T) {
	created := time.Date(2026, 11, 30, 9, 15, 2, 123456789, time.UTC)
	golden.CheckDecoded(t, "testdata/records", map[string]*Container{
		"full.json": {
			ID:        "3f1c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a",
			SandboxID: "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
			Name:      "web", Attempt: 2,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "web", Attempt: 2},
				Image:    &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
				Command:  []string{"/bin/sh"}, Args: []string{"-c", "sleep 1000"}, WorkingDir: "/work",
				Envs:        []*runtimeapi.KeyValue{{Key: "A", Value: []byte("b")}},
				Mounts:      []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/tmp/data", Readonly: true}},
				Labels:      map[string]string{"io.kubernetes.container.name": "web"},
				Annotations: map[string]string{"io.kubernetes.container.restartCount": "2"},
				LogPath:     "web/2.log",
				Linux: &runtimeapi.LinuxContainerConfig{
					Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuPeriod: 100000, CpuQuota: 50000, MemoryLimitInBytes: 64 << 20},
					SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
						RunAsUser:        &runtimeapi.Int64Value{Value: 1000},
						NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
					},
				},
			},
			ImageRef: "registry.k8s.io/e2e-test-images/busybox@sha256:39e1e963e5310e9c313bad51523be012ede7b35bb9316517d19089a010356592",
			ImageID:  "sha256:a0a8ea5b96b1f8c7da2ea5e3a7aed0f2b1fb4c6d5a27b0d1fa5b1c2e2ee0c3f4",
			LogPath:  "/home/u/.local/share/crib/pods/ns_pod_uid/web/2.log", Handler: "runc",
			State: StateExited, Pid: 4242, MonitorPid: 4240,
			CreatedAt: created, StartedAt: created.Add(time.Second), FinishedAt: created.Add(time.Minute),
			ExitCode: 137, Reason: ReasonOOMKilled, Message: "out of memory",
			Labels:      map[string]string{"io.kubernetes.container.name": "web"},
			Annotations: map[string]string{"io.kubernetes.container.restartCount": "2"},
			StopSignal:  "SIGTERM", CgroupsPath: "/crib/pods/pod9a8b/3f1c2a9b", OwnPIDNamespace: true,
			User:         &User{UID: 1000, GID: 1000, SupplementalGroups: []int64{50000, 10}},
			ImageVolumes: map[string]string{"registry.k8s.io/pause:3.10": "sha256:873ed75102791e5b0b8a7fcd41606c92fcec98d56d05ead4ac5131650004c136"},
		},
		"minimal.json": {ID: "0b1c", SandboxID: "0a1b", Name: "min", State: StateCreated, CreatedAt: created, Unconfined: true},
	}, unmarshalContainer)
}
