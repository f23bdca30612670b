package runtime

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// validInput is a container that generates without error; each error case
// breaks one thing in it.
func validInput(t *testing.T) (SpecInput, string) {
	t.Helper()
	td := testdataDir(t)
	in := defaultCaseInput(td)
	in.Config = &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  []string{"sleep", "1000"},
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
	}
	in.Sandbox = &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Uid: "uid-1", Namespace: "default"},
		Hostname: "web-0",
		Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
	}
	return in, td
}

func TestGenerateSpecErrors(t *testing.T) {
	hostMount := func(in *SpecInput, m *runtimeapi.Mount) { in.Config.Mounts = append(in.Config.Mounts, m) }
	tests := []struct {
		name string
		// break modifies a valid input; td is the testdata directory.
		breakIt func(in *SpecInput, td string)
		want    error
		msg     string
	}{
		{"missing host path", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/data", HostPath: filepath.Join(td, "host/absent")})
		}, errdefs.ErrInvalidArgument, "does not exist"},
		{"host path escapes through ..", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/data", HostPath: td + "/host/vol/../../rootfs/basic/etc"})
		}, errdefs.ErrInvalidArgument, `escapes through ".."`},
		{"container path with ..", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/data/../../etc", HostPath: td + "/host/vol"})
		}, errdefs.ErrInvalidArgument, `contains ".."`},
		{"relative container path", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "data", HostPath: td + "/host/vol"})
		}, errdefs.ErrInvalidArgument, "not absolute"},
		{"two mounts at one path", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/data", HostPath: td + "/host/vol"})
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/data/", HostPath: td + "/host/shared"})
		}, errdefs.ErrInvalidArgument, "two mounts"},
		{"image sub path escapes", func(in *SpecInput, td string) {
			in.ImageVolumes = map[string]string{"img": td + "/host/image"}
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/m", Image: &runtimeapi.ImageSpec{Image: "img"}, ImageSubPath: "data/../../../rootfs"})
		}, errdefs.ErrInvalidArgument, "escapes the image"},
		{"image sub path missing", func(in *SpecInput, td string) {
			in.ImageVolumes = map[string]string{"img": td + "/host/image"}
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/m", Image: &runtimeapi.ImageSpec{Image: "img"}, ImageSubPath: "nope"})
		}, errdefs.ErrInvalidArgument, "does not exist in image"},
		{"image volume not mounted", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/m", Image: &runtimeapi.ImageSpec{Image: "img"}})
		}, errdefs.ErrInvalidArgument, "not mounted"},
		{"image and host path", func(in *SpecInput, td string) {
			in.ImageVolumes = map[string]string{"img": td + "/host/image"}
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/m", HostPath: td + "/host/vol", Image: &runtimeapi.ImageSpec{Image: "img"}})
		}, errdefs.ErrInvalidArgument, "both host_path and image"},
		{"rro without readonly", func(in *SpecInput, td string) {
			in.Host.RecursiveReadOnly = true
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/vol", RecursiveReadOnly: true})
		}, errdefs.ErrInvalidArgument, "needs readonly"},
		{"rro with rslave", func(in *SpecInput, td string) {
			in.Host.RecursiveReadOnly = true
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/vol", Readonly: true, RecursiveReadOnly: true,
				Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER})
		}, errdefs.ErrInvalidArgument, "private propagation"},
		{"rshared on a private mount", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/private", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL})
		}, errdefs.ErrInvalidArgument, "not shared"},
		{"rshared on a slave mount", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/slave", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL})
		}, errdefs.ErrInvalidArgument, "not shared"},
		{"rslave on a private mount", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/private", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER})
		}, errdefs.ErrInvalidArgument, "shared or slave"},
		{"mount option not allowed", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/vol", MountOptions: []string{"remount"}})
		}, errdefs.ErrInvalidArgument, "not allowed"},
		{"ID-mapped mount", func(in *SpecInput, td string) {
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/vol", UidMappings: []*runtimeapi.IDMapping{{Length: 1}}})
		}, errdefs.ErrUnimplemented, "ID-mapped"},
		{"ID-mapped mount in a pod user namespace, not the pod's mapping", func(in *SpecInput, td string) {
			ids := []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}}
			in.Sandbox.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}}
			in.Namespaces.User = "/run/crib/ns/pod1/user"
			in.Namespaces.UIDMap = []specs.LinuxIDMapping{{HostID: 65536, Size: 65536}}
			in.Namespaces.GIDMap = in.Namespaces.UIDMap
			hostMount(in, &runtimeapi.Mount{ContainerPath: "/mnt", HostPath: td + "/host/vol",
				UidMappings: []*runtimeapi.IDMapping{{HostId: 131072, Length: 65536}}, GidMappings: ids})
		}, errdefs.ErrUnimplemented, "ID-mapped"},
		{"unknown run_as_username", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.RunAsUsername = "ghost"
		}, errdefs.ErrInvalidArgument, `user "ghost" not found`},
		{"unknown image USER", func(in *SpecInput, td string) {
			in.Image = imageWithUser("ghost")
		}, errdefs.ErrInvalidArgument, `user "ghost" not found`},
		{"unknown image USER group", func(in *SpecInput, td string) {
			in.Image = imageWithUser("www-data:ghosts")
		}, errdefs.ErrInvalidArgument, `group "ghosts" not found`},
		{"username in an image without passwd", func(in *SpecInput, td string) {
			in.RootfsPath = td + "/rootfs/empty"
			in.Config.Linux.SecurityContext.RunAsUsername = "nobody"
		}, errdefs.ErrInvalidArgument, "not found"},
		{"run_as_group without a user", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 1002}
		}, errdefs.ErrInvalidArgument, "run_as_group is set without"},
		{"run_as_user and run_as_username", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1}
			in.Config.Linux.SecurityContext.RunAsUsername = "nobody"
		}, errdefs.ErrInvalidArgument, "both set"},
		{"negative run_as_user", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: -1}
		}, errdefs.ErrInvalidArgument, "out of range"},
		{"sysctl not namespaced", func(in *SpecInput, td string) {
			in.Sandbox.Linux.Sysctls = map[string]string{"kernel.panic": "1"}
		}, errdefs.ErrInvalidArgument, `"kernel.panic" is not namespaced`},
		{"net sysctl with host network", func(in *SpecInput, td string) {
			in.Namespaces.Network = NamespacePath{Host: true}
			in.Sandbox.Linux.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, errdefs.ErrInvalidArgument, "own network namespace"},
		{"ipc sysctl with host IPC", func(in *SpecInput, td string) {
			in.Namespaces.IPC = NamespacePath{Host: true}
			in.Sandbox.Linux.Sysctls = map[string]string{"kernel.shmmax": "1"}
		}, errdefs.ErrInvalidArgument, "own IPC namespace"},
		{"apparmor on a host without it", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/deny-write"}
		}, errdefs.ErrInvalidArgument, "AppArmor is not enabled on this host"},
		{"legacy apparmor on a host without it", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.ApparmorProfile = "localhost/deny-write"
		}, errdefs.ErrInvalidArgument, "AppArmor is not enabled on this host"},
		{"apparmor profile not loaded", func(in *SpecInput, td string) {
			in.Host.AppArmorEnabled = true
			in.Config.Linux.SecurityContext.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/non-existent-profile"}
		}, errdefs.ErrInvalidArgument, "is not loaded"},
		{"missing localhost seccomp profile", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: td + "/seccomp/absent.json"}
		}, errdefs.ErrInvalidArgument, "does not exist"},
		{"malformed localhost seccomp profile", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: td + "/seccomp/broken.json"}
		}, errdefs.ErrInvalidArgument, "both 'name' and 'names'"},
		{"localhost seccomp without seccomp", func(in *SpecInput, td string) {
			in.Host.SeccompEnabled = false
			in.Config.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: td + "/seccomp/block-hostname.json"}
		}, errdefs.ErrInvalidArgument, "seccomp is not enabled"},
		{"relative seccomp profile escapes the root", func(in *SpecInput, td string) {
			in.SeccompProfileRoot = td + "/seccomp"
			in.Config.Linux.SecurityContext.SeccompProfilePath = "localhost/../rootfs/basic/etc/passwd"
		}, errdefs.ErrInvalidArgument, "escapes the seccomp profile root"},
		{"unknown legacy seccomp profile", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.SeccompProfilePath = "strict"
		}, errdefs.ErrInvalidArgument, `unknown profile "strict"`},
		{"privileged container in an unprivileged pod", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Privileged = true
		}, errdefs.ErrInvalidArgument, "not privileged"},
		{"unknown capability", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"FLY"}}
		}, errdefs.ErrInvalidArgument, `unknown capability "FLY"`},
		{"capability outside the bounding set", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_RESOURCE"}}
		}, errdefs.ErrInvalidArgument, "outside crib's bounding set"},
		{"unsupported hugepage size", func(in *SpecInput, td string) {
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "16GB", Limit: 1}}}
		}, errdefs.ErrInvalidArgument, `hugepage size "16GB"`},
		{"unified on cgroup v1", func(in *SpecInput, td string) {
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}}
		}, errdefs.ErrInvalidArgument, "cgroup v1"},
		{"swap below memory", func(in *SpecInput, td string) {
			in.Host.SwapControl = true
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20}
		}, errdefs.ErrInvalidArgument, "below the memory limit"},
		{"oom_score_adj out of range", func(in *SpecInput, td string) {
			in.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}
		}, errdefs.ErrInvalidArgument, "oom_score_adj"},
		{"no command anywhere", func(in *SpecInput, td string) {
			in.Config.Command = nil
		}, errdefs.ErrInvalidArgument, "no command"},
		{"relative working dir", func(in *SpecInput, td string) {
			in.Config.WorkingDir = "srv"
		}, errdefs.ErrInvalidArgument, "not absolute"},
		{"empty env name", func(in *SpecInput, td string) {
			in.Config.Envs = []*runtimeapi.KeyValue{{Key: "", Value: []byte("x")}}
		}, errdefs.ErrInvalidArgument, "environment variable"},
		{"relative masked path", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.MaskedPaths = []string{"proc/kcore"}
		}, errdefs.ErrInvalidArgument, "not absolute"},
		{"missing device", func(in *SpecInput, td string) {
			in.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/absent", ContainerPath: "/dev/absent", Permissions: "rw"}}
		}, errdefs.ErrInvalidArgument, "no such device"},
		{"bad device permissions", func(in *SpecInput, td string) {
			in.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwx"}}
		}, errdefs.ErrInvalidArgument, "only r, w and m"},
		{"CDI devices", func(in *SpecInput, td string) {
			in.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
		}, errdefs.ErrUnimplemented, "CDI"},
		{"pod user namespace asked for but not made", func(in *SpecInput, td string) {
			in.Sandbox.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{{HostId: 1000, Length: 65536}}}}
		}, errdefs.ErrFailedPrecondition, "has none"},
		{"pod user namespace without its mapping", func(in *SpecInput, td string) {
			in.Namespaces.User = "/run/crib/sandboxes/p/ns/user"
		}, errdefs.ErrFailedPrecondition, "no id mapping"},
		{"user namespace mode CONTAINER", func(in *SpecInput, td string) {
			in.Sandbox.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_CONTAINER}}
		}, errdefs.ErrInvalidArgument, "not allowed"},
		{"PID mode POD without a pod PID namespace", func(in *SpecInput, td string) {
			in.Namespaces.PID = ""
		}, errdefs.ErrFailedPrecondition, "no shared PID namespace"},
		{"PID mode TARGET without the target", func(in *SpecInput, td string) {
			in.Config.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "ctr0"}
		}, errdefs.ErrInvalidArgument, `target container "ctr0"`},
		{"pod without a network namespace", func(in *SpecInput, td string) {
			in.Namespaces.Network = NamespacePath{}
		}, errdefs.ErrFailedPrecondition, "no network namespace"},
		{"no container config", func(in *SpecInput, td string) {
			in.Config = nil
		}, errdefs.ErrInvalidArgument, "no container config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, td := validInput(t)
			tt.breakIt(&in, td)
			devices := map[string]specs.LinuxDevice{"/dev/fuse": fuseDevice()}
			spec, err := generateSpec(in, fakeProbes([]mountEntry{
				{Mountpoint: "/"},
				{Mountpoint: td + "/host/slave", Optional: "master:3"},
			}, devices, nil))
			if err == nil {
				t.Fatalf("want an error wrapping %v, got a spec for %v", tt.want, spec.Process.Args)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %q does not wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// TestValidInputGenerates keeps the error table honest: the input it breaks
// must generate when left alone.
func TestValidInputGenerates(t *testing.T) {
	in, _ := validInput(t)
	if _, err := generateSpec(in, fakeProbes(nil, nil, nil)); err != nil {
		t.Fatal(err)
	}
}

func imageWithUser(user string) *imgspec.Image {
	return &imgspec.Image{Config: imgspec.ImageConfig{User: user}}
}

func fuseDevice() specs.LinuxDevice {
	mode := fs.FileMode(0o666)
	var zero uint32
	return specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: &mode, UID: &zero, GID: &zero}
}
