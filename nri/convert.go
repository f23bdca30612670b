package nri

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod is what plugins learn about a pod sandbox.
type Pod struct {
	ID             string
	Config         *runtimeapi.PodSandboxConfig
	RuntimeHandler string
	// NetNSPath is the pod's pinned network namespace ("" = the node's).
	NetNSPath    string
	IPs          []string
	CgroupParent string
	// Pid is the pod's reaper, when it has its own PID namespace.
	Pid int
}

// Container is what plugins learn about a container.
type Container struct {
	ID, PodID  string
	Config     *runtimeapi.ContainerConfig
	State      runtimeapi.ContainerState
	Pid        int
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	Message    string
	// Spec is the container's OCI spec when crib has it at hand (create);
	// without it, plugins see what the CRI config says.
	Spec *specs.Spec
}

func podSandbox(p Pod) *api.PodSandbox {
	md := p.Config.GetMetadata()
	out := &api.PodSandbox{
		Id:             p.ID,
		Name:           md.GetName(),
		Uid:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Labels:         p.Config.GetLabels(),
		Annotations:    p.Config.GetAnnotations(),
		RuntimeHandler: p.RuntimeHandler,
		Ips:            p.IPs,
		Pid:            uint32(max(p.Pid, 0)),
		Linux: &api.LinuxPodSandbox{
			CgroupParent: p.CgroupParent,
			CgroupsPath:  p.CgroupParent,
		},
	}
	if p.NetNSPath != "" {
		out.Linux.Namespaces = []*api.LinuxNamespace{{Type: "network", Path: p.NetNSPath}}
	}
	if r := p.Config.GetLinux().GetResources(); r != nil {
		out.Linux.Resources = apiResources(r)
	}
	if r := p.Config.GetLinux().GetOverhead(); r != nil {
		out.Linux.PodOverhead = apiResources(r)
	}
	return out
}

var containerStates = map[runtimeapi.ContainerState]api.ContainerState{
	runtimeapi.ContainerState_CONTAINER_CREATED: api.ContainerState_CONTAINER_CREATED,
	runtimeapi.ContainerState_CONTAINER_RUNNING: api.ContainerState_CONTAINER_RUNNING,
	runtimeapi.ContainerState_CONTAINER_EXITED:  api.ContainerState_CONTAINER_STOPPED,
}

func container(c Container) *api.Container {
	out := &api.Container{
		Id:            c.ID,
		PodSandboxId:  c.PodID,
		Name:          c.Config.GetMetadata().GetName(),
		State:         containerStates[c.State],
		Labels:        c.Config.GetLabels(),
		Annotations:   c.Config.GetAnnotations(),
		Pid:           uint32(max(c.Pid, 0)),
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
	}
	if !c.CreatedAt.IsZero() {
		out.CreatedAt = c.CreatedAt.UnixNano()
	}
	if !c.StartedAt.IsZero() {
		out.StartedAt = c.StartedAt.UnixNano()
	}
	if !c.FinishedAt.IsZero() {
		out.FinishedAt = c.FinishedAt.UnixNano()
	}
	if c.Spec == nil {
		out.Args = append(append([]string{}, c.Config.GetCommand()...), c.Config.GetArgs()...)
		for _, kv := range c.Config.GetEnvs() {
			out.Env = append(out.Env, kv.GetKey()+"="+string(kv.GetValue()))
		}
		if r := c.Config.GetLinux().GetResources(); r != nil {
			out.Linux = &api.LinuxContainer{Resources: apiResources(r)}
		}
		return out
	}
	fromSpec(out, c.Spec)
	return out
}

// fromSpec shows plugins the spec crib is about to create the container
// with.
func fromSpec(out *api.Container, s *specs.Spec) {
	if len(s.Annotations) > 0 {
		out.Annotations = s.Annotations
	}
	if s.Process != nil {
		out.Args = s.Process.Args
		out.Env = s.Process.Env
		for _, r := range s.Process.Rlimits {
			out.Rlimits = append(out.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	out.Mounts = api.FromOCIMounts(s.Mounts)
	out.Hooks = api.FromOCIHooks(s.Hooks)
	if l := s.Linux; l != nil {
		out.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, s.Annotations),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
		}
		if s.Process != nil && s.Process.OOMScoreAdj != nil {
			out.Linux.OomScoreAdj = api.Int(*s.Process.OOMScoreAdj)
		}
	}
}

// apiResources spells CRI resources as NRI does.
func apiResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu: &api.LinuxCPU{
			Cpus: r.GetCpusetCpus(),
			Mems: r.GetCpusetMems(),
		},
		Memory:  &api.LinuxMemory{},
		Unified: r.GetUnified(),
	}
	if v := r.GetCpuShares(); v != 0 {
		out.Cpu.Shares = api.UInt64(uint64(v))
	}
	if v := r.GetCpuQuota(); v != 0 {
		out.Cpu.Quota = api.Int64(v)
	}
	if v := r.GetCpuPeriod(); v != 0 {
		out.Cpu.Period = api.UInt64(uint64(v))
	}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory.Limit = api.Int64(v)
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 {
		out.Memory.Swap = api.Int64(v)
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// criResources lays NRI resources over CRI ones (base may be nil): what
// a plugin set wins, what it left alone stays.
func criResources(base *runtimeapi.LinuxContainerResources, r *api.LinuxResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if base != nil {
		out = protoClone(base)
	}
	if r == nil {
		return out
	}
	if c := r.GetCpu(); c != nil {
		if v := c.GetShares().Get(); v != nil {
			out.CpuShares = int64(*v)
		}
		if v := c.GetQuota().Get(); v != nil {
			out.CpuQuota = *v
		}
		if v := c.GetPeriod().Get(); v != nil {
			out.CpuPeriod = int64(*v)
		}
		if c.GetCpus() != "" {
			out.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			out.CpusetMems = c.GetMems()
		}
	}
	if m := r.GetMemory(); m != nil {
		if v := m.GetLimit().Get(); v != nil {
			out.MemoryLimitInBytes = *v
		}
		if v := m.GetSwap().Get(); v != nil {
			out.MemorySwapLimitInBytes = *v
		}
	}
	if len(r.GetHugepageLimits()) > 0 {
		out.HugepageLimits = nil
		for _, h := range r.GetHugepageLimits() {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	for k, v := range r.GetUnified() {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		out.Unified[k] = v
	}
	return out
}

func protoClone[T proto.Message](m T) T { return proto.Clone(m).(T) }
