package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// subject is one CRI runtime under test, reached over its gRPC socket with
// the generated CRI v1 clients (k8s.io/cri-client would add its
// component-base dependencies to go.mod for no measured difference).
type subject struct {
	name         string
	conn         *grpc.ClientConn
	rs           runtimeapi.RuntimeServiceClient
	is           runtimeapi.ImageServiceClient
	cgroupParent string // pod cgroup parent as a kubelet would pass it
	handler      string // the CRI runtime handler pods ask for ("": the default)
	logDir       string // where pod log directories go
	procs        procSet
}

func dialSubject(ctx context.Context, name, endpoint, cgroupParent, logDir string) (*subject, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", name, endpoint, err)
	}
	s := &subject{name: name, conn: conn, rs: runtimeapi.NewRuntimeServiceClient(conn),
		is: runtimeapi.NewImageServiceClient(conn), cgroupParent: cgroupParent, logDir: logDir}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.rs.Version(vctx, &runtimeapi.VersionRequest{}); err != nil {
		return nil, fmt.Errorf("%s at %s: Version: %w", name, endpoint, err)
	}
	return s, nil
}

// withHandler is the same runtime with pods asking for another CRI
// runtime handler.
func (s *subject) withHandler(h string) *subject {
	c := *s
	c.name, c.handler = s.name+" ("+h+" handler)", h
	return &c
}

// runtimeHandlers asks crib's verbose Status for its handlers and the
// default one (crictl info's "runtime" note); runc when it says nothing.
func (s *subject) runtimeHandlers(ctx context.Context) ([]string, string) {
	r, err := s.rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	var note struct {
		Handlers []string `json:"handlers"`
		Default  string   `json:"default"`
	}
	if err != nil || json.Unmarshal([]byte(r.GetInfo()["runtime"]), &note) != nil || note.Default == "" {
		return []string{"runc"}, "runc"
	}
	return note.Handlers, note.Default
}

// workloadMarker is in the command line of every benchmark container, so
// memory accounting can tell a container's processes from a runtime's.
const workloadMarker = "cribbench-workload"

// workloadCommand idles, and exits at once on SIGTERM as a well-behaved
// pod does, so StopContainer measures the runtime, not a grace period.
var workloadCommand = []string{"/bin/sh", "-c", "trap 'exit 0' TERM; sleep 86399 & wait", workloadMarker}

func (s *subject) podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: "uid-" + name, Namespace: "cribbench"},
		Hostname:     name,
		LogDirectory: filepath.Join(s.logDir, name),
		Labels:       map[string]string{"cribbench": "1"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: s.cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
}

func containerConfig(image string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  workloadCommand,
		LogPath:  "c.log",
		Labels:   map[string]string{"cribbench": "1"},
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
	}
}

// pod is a running pod with one running container.
type pod struct {
	id, ctr string
}

// startPod runs a pod and one container in it, untimed.
func (s *subject) startPod(ctx context.Context, name, image string) (pod, error) {
	cfg := s.podConfig(name)
	id, err := s.runPod(ctx, cfg)
	if err != nil {
		return pod{}, fmt.Errorf("%s RunPodSandbox %s: %w", s.name, name, err)
	}
	c, err := s.createContainer(ctx, id, containerConfig(image), cfg)
	if err != nil {
		return pod{id: id}, fmt.Errorf("%s CreateContainer in %s: %w", s.name, name, err)
	}
	if err := s.startContainer(ctx, c); err != nil {
		return pod{id: id, ctr: c}, fmt.Errorf("%s StartContainer in %s: %w", s.name, name, err)
	}
	return pod{id: id, ctr: c}, nil
}

// removePod stops and removes a pod with whatever it holds.
func (s *subject) removePod(ctx context.Context, id string) error {
	if err := s.stopPod(ctx, id); err != nil {
		return fmt.Errorf("%s StopPodSandbox %s: %w", s.name, id, err)
	}
	if err := s.removePodOnly(ctx, id); err != nil {
		return fmt.Errorf("%s RemovePodSandbox %s: %w", s.name, id, err)
	}
	return nil
}

// clean removes every benchmark pod left by an earlier, interrupted run.
func (s *subject) clean(ctx context.Context) error {
	resp, err := s.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"cribbench": "1"}}})
	if err != nil {
		return fmt.Errorf("%s ListPodSandbox: %w", s.name, err)
	}
	for _, p := range resp.Items {
		if err := s.removePod(ctx, p.Id); err != nil {
			return err
		}
	}
	return nil
}

// removeImage removes ref when present, so the next pull starts cold.
func (s *subject) removeImage(ctx context.Context, ref string) error {
	st, err := s.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("%s ImageStatus %s: %w", s.name, ref, err)
	}
	if st.GetImage() == nil {
		return nil
	}
	if _, err := s.is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: st.Image.Id}}); err != nil {
		return fmt.Errorf("%s RemoveImage %s: %w", s.name, ref, err)
	}
	return nil
}

func (s *subject) pull(ctx context.Context, ref string) error {
	if _, err := s.is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("%s PullImage %s: %w", s.name, ref, err)
	}
	return nil
}

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// The RPCs, in the shape the phases use them.

func (s *subject) runPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	r, err := s.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: s.handler})
	return r.GetPodSandboxId(), err
}

func (s *subject) createContainer(ctx context.Context, pod string, c *runtimeapi.ContainerConfig, cfg *runtimeapi.PodSandboxConfig) (string, error) {
	r, err := s.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: c, SandboxConfig: cfg})
	return r.GetContainerId(), err
}

func (s *subject) startContainer(ctx context.Context, id string) error {
	_, err := s.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

// execSync runs cmd in the container and fails unless it exits 0.
func (s *subject) execSync(ctx context.Context, id string, cmd ...string) error {
	r, err := s.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("exec %v exited %d: %s", cmd, r.ExitCode, r.Stderr)
	}
	return nil
}

func (s *subject) stopContainer(ctx context.Context, id string, timeout int64) error {
	_, err := s.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout})
	return err
}

func (s *subject) removeContainer(ctx context.Context, id string) error {
	_, err := s.rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	return err
}

func (s *subject) stopPod(ctx context.Context, id string) error {
	_, err := s.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	return err
}

func (s *subject) removePodOnly(ctx context.Context, id string) error {
	_, err := s.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

func (s *subject) listContainers(ctx context.Context) (int, error) {
	r, err := s.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	return len(r.GetContainers()), err
}

func (s *subject) listContainerStats(ctx context.Context) (int, error) {
	r, err := s.rs.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
	return len(r.GetStats()), err
}

func (s *subject) version(ctx context.Context) string {
	v, err := s.rs.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return s.name + " (version unknown: " + err.Error() + ")"
	}
	return v.RuntimeName + " " + v.RuntimeVersion
}
