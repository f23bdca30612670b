package cri

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/runtime"
	"github.com/crib-dev/crib/sandbox"
)

// rpcCase is one call through gRPC and the code the client must see.
type rpcCase struct {
	name string
	call func(context.Context) error
	want codes.Code
}

// TestRPCErrorCodes asserts, through the gRPC boundary, the code of each
// RPC's bad input: unknown, empty, ambiguous ids; names in use; objects
// in the wrong state; a dependency's unnamed failure (Internal). Never
// Unknown, which is what a missed conversion used to answer.
func TestRPCErrorCodes(t *testing.T) {
	e := newFakeEnv(t, "")
	e.addPod2()
	e.pods.add(&sandbox.Sandbox{ID: "pod3", State: sandbox.StateNotReady, Config: podCfg("stopped", nil)})
	for _, c := range []*runtime.Container{
		{ID: "ctraaa1", SandboxID: "pod1", State: runtime.StateCreated, Config: ctrCfg("a1", nil)},
		{ID: "ctraaa2", SandboxID: "pod1", State: runtime.StateCreated, Config: ctrCfg("a2", nil)},
		{ID: "ctrstopped1", SandboxID: "pod3", State: runtime.StateCreated, Config: ctrCfg("s1", nil)},
	} {
		e.ctrs.add(c)
	}
	conn := e.conn(t)
	rs, is := runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)

	var tests []rpcCase
	tests = append(tests, containerCases(rs)...)
	tests = append(tests, podCases(rs)...)
	tests = append(tests, streamingCases(rs)...)
	tests = append(tests, imageCases(is)...)
	tests = append(tests, rpcCase{"create: storage fails unnamed", func(ctx context.Context) error {
		e.rootfs.inject("Status", errors.New("disk on fire"))
		defer e.rootfs.inject("Status", nil)
		_, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: ctrCfg("fire", nil)})
		return err
	}, codes.Internal})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(context.Background())
			if got := status.Code(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

func containerCases(rs runtimeapi.RuntimeServiceClient) []rpcCase {
	start := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}
	}
	stop := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		}
	}
	remove := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		}
	}
	inspect := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			return err
		}
	}
	create := func(pod, name string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrCfg(name, nil)})
			return err
		}
	}
	return []rpcCase{
		{"create: first of a name", create("pod1", "dup"), codes.OK},
		{"create: name in use", create("pod1", "dup"), codes.AlreadyExists},
		{"create: pod not ready", create("pod3", "late"), codes.FailedPrecondition},
		{"start: empty id", start(""), codes.InvalidArgument},
		{"start: ambiguous prefix", start("ctraaa"), codes.InvalidArgument},
		{"start: pod not ready", start("ctrstopped1"), codes.FailedPrecondition},
		{"stop: empty id", stop(""), codes.InvalidArgument},
		{"stop: unknown", stop("nope"), codes.OK},
		{"stop: ambiguous prefix", stop("ctraaa"), codes.InvalidArgument},
		{"remove: empty id", remove(""), codes.InvalidArgument},
		{"remove: unknown", remove("nope"), codes.OK},
		{"remove: ambiguous prefix", remove("ctraaa"), codes.InvalidArgument},
		{"status: empty id", inspect(""), codes.InvalidArgument},
		{"status: unknown", inspect("nope"), codes.NotFound},
		{"status: ambiguous prefix", inspect("ctraaa"), codes.InvalidArgument},
		{"status: unique prefix", inspect("ctrst"), codes.OK},
		{"stats: unknown", func(ctx context.Context) error {
			_, err := rs.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound},
		{"update resources: unknown", func(ctx context.Context) error {
			_, err := rs.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound},
		{"reopen log: unknown", func(ctx context.Context) error {
			_, err := rs.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound},
		{"execsync: ambiguous prefix", func(ctx context.Context) error {
			_, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: "ctraaa", Cmd: []string{"ls"}})
			return err
		}, codes.InvalidArgument},
	}
}

func podCases(rs runtimeapi.RuntimeServiceClient) []rpcCase {
	stop := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		}
	}
	remove := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		}
	}
	inspect := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
			return err
		}
	}
	// pod1's own metadata: web, default, u1, attempt 0.
	taken := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"}}
	return []rpcCase{
		{"run: name in use", func(ctx context.Context) error {
			_, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: taken})
			return err
		}, codes.AlreadyExists},
		{"stop pod: empty id", stop(""), codes.InvalidArgument},
		{"stop pod: unknown", stop("nopod"), codes.OK},
		{"stop pod: ambiguous prefix", stop("pod"), codes.InvalidArgument},
		{"remove pod: empty id", remove(""), codes.InvalidArgument},
		{"remove pod: unknown", remove("nopod"), codes.OK},
		{"remove pod: ambiguous prefix", remove("pod"), codes.InvalidArgument},
		{"pod status: empty id", inspect(""), codes.InvalidArgument},
		{"pod status: unknown", inspect("nopod"), codes.NotFound},
		{"pod status: ambiguous prefix", inspect("pod"), codes.InvalidArgument},
		{"pod status: unique prefix", inspect("pod2"), codes.OK},
		{"pod stats: unknown", func(ctx context.Context) error {
			_, err := rs.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nopod"})
			return err
		}, codes.NotFound},
		{"pod stats: empty id", func(ctx context.Context) error {
			_, err := rs.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{})
			return err
		}, codes.InvalidArgument},
	}
}

func streamingCases(rs runtimeapi.RuntimeServiceClient) []rpcCase {
	exec := func(id string, tty, stderr bool) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh"}, Tty: tty, Stdout: true, Stderr: stderr})
			return err
		}
	}
	attach := func(id string, stdout bool) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: stdout})
			return err
		}
	}
	portForward := func(pod string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := rs.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: pod, Port: []int32{80}})
			return err
		}
	}
	return []rpcCase{
		{"exec: unknown", exec("nope", false, false), codes.NotFound},
		{"exec: not running", exec("ctraaa1", false, false), codes.FailedPrecondition},
		{"exec: tty and stderr", exec("ctraaa1", true, true), codes.InvalidArgument},
		{"attach: unknown", attach("nope", true), codes.NotFound},
		{"attach: not running", attach("ctraaa1", true), codes.FailedPrecondition},
		{"attach: no stream", attach("ctraaa1", false), codes.InvalidArgument},
		{"portforward: pod not ready", portForward("pod3"), codes.FailedPrecondition},
		{"portforward: empty pod id", portForward(""), codes.InvalidArgument},
	}
}

func imageCases(is runtimeapi.ImageServiceClient) []rpcCase {
	return []rpcCase{
		{"pull: empty reference", func(ctx context.Context) error {
			_, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: " "}})
			return err
		}, codes.InvalidArgument},
		{"image status: empty reference", func(ctx context.Context) error {
			_, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{})
			return err
		}, codes.InvalidArgument},
		{"remove image: empty reference", func(ctx context.Context) error {
			_, err := is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{})
			return err
		}, codes.InvalidArgument},
	}
}
