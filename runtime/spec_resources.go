package runtime

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// setResources sets the OOM score and the cgroup limits. Without a cgroup
// (rootless and no delegation) the spec carries no limits: runc refuses to
// start a container whose limits it cannot apply, and an unconfined pod is
// reported as such elsewhere.
func (b *specBuilder) setResources() error {
	r := b.in.Config.GetLinux().GetResources()
	adj, err := oomScoreAdj(r.GetOomScoreAdj(), b.in.Host.MinOOMScoreAdj)
	if err != nil {
		return err
	}
	b.spec.Process.OOMScoreAdj = &adj
	if b.in.Rootless && b.in.CgroupsPath == "" {
		return nil
	}
	res := b.spec.Linux.Resources
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if err := b.fillResources(res, r); err != nil {
		return err
	}
	if !reflect.DeepEqual(*res, specs.LinuxResources{}) {
		b.spec.Linux.Resources = res
	}
	return nil
}

// oomScoreAdj raises a request below crib's own score to it: lowering a
// score needs CAP_SYS_RESOURCE, which crib lacks (always when rootless), and
// runc would fail the container.
func oomScoreAdj(requested int64, floor int) (int, error) {
	if requested < -1000 || requested > 1000 {
		return 0, fmt.Errorf("%w: oom_score_adj %d is outside -1000…1000", errdefs.ErrInvalidArgument, requested)
	}
	return max(int(requested), floor), nil
}

func (b *specBuilder) fillResources(res *specs.LinuxResources, r *runtimeapi.LinuxContainerResources) error {
	cpu, err := cpuLimits(r)
	if err != nil {
		return err
	}
	res.CPU = cpu
	mem, err := b.memoryLimits(r)
	if err != nil {
		return err
	}
	res.Memory = mem
	if res.HugepageLimits, err = b.hugepageLimits(r.GetHugepageLimits()); err != nil {
		return err
	}
	if len(r.GetUnified()) > 0 {
		if !b.in.Host.CgroupV2 {
			return fmt.Errorf("%w: unified (cgroup v2) resources on a cgroup v1 host", errdefs.ErrInvalidArgument)
		}
		res.Unified = maps.Clone(r.GetUnified())
	}
	return nil
}

// cpuLimits copies the set values; 0 means "not specified" in the CRI.
// A negative quota is the kernel's "no limit" and passes through.
func cpuLimits(r *runtimeapi.LinuxContainerResources) (*specs.LinuxCPU, error) {
	if r.GetCpuShares() < 0 || r.GetCpuPeriod() < 0 {
		return nil, fmt.Errorf("%w: negative cpu shares or period", errdefs.ErrInvalidArgument)
	}
	var c specs.LinuxCPU
	set := false
	if v := uint64(r.GetCpuShares()); v > 0 {
		c.Shares, set = &v, true
	}
	if v := r.GetCpuQuota(); v != 0 {
		c.Quota, set = &v, true
	}
	if v := uint64(r.GetCpuPeriod()); v > 0 {
		c.Period, set = &v, true
	}
	if r.GetCpusetCpus() != "" || r.GetCpusetMems() != "" {
		c.Cpus, c.Mems, set = r.GetCpusetCpus(), r.GetCpusetMems(), true
	}
	if !set {
		return nil, nil
	}
	return &c, nil
}

// memoryLimits sets the limit and, where the host can enforce it, the swap
// limit (memory plus swap, as in cgroup v1 and the OCI spec). Without swap
// accounting the swap limit is dropped, as containerd does: runc would
// refuse it, and memory.limit still caps the container.
func (b *specBuilder) memoryLimits(r *runtimeapi.LinuxContainerResources) (*specs.LinuxMemory, error) {
	limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit < 0 || swap < 0 {
		return nil, fmt.Errorf("%w: negative memory or swap limit", errdefs.ErrInvalidArgument)
	}
	var m specs.LinuxMemory
	set := false
	if limit > 0 {
		m.Limit, set = &limit, true
	}
	if swap > 0 && b.in.Host.SwapControl {
		if limit > 0 && swap < limit {
			return nil, fmt.Errorf("%w: memory_swap_limit_in_bytes %d is below the memory limit %d", errdefs.ErrInvalidArgument, swap, limit)
		}
		m.Swap, set = &swap, true
	}
	if !set {
		return nil, nil
	}
	return &m, nil
}

// hugepageLimits keeps the CRI page size spelling ("2MB"), which is also
// the runtime's; a size the host lacks is refused.
func (b *specBuilder) hugepageLimits(limits []*runtimeapi.HugepageLimit) ([]specs.LinuxHugepageLimit, error) {
	var out []specs.LinuxHugepageLimit
	for _, l := range limits {
		if !slices.Contains(b.in.Host.HugepageSizes, l.GetPageSize()) {
			return nil, fmt.Errorf("%w: hugepage size %q is not supported on this host (supported: %s)", errdefs.ErrInvalidArgument, l.GetPageSize(), strings.Join(b.in.Host.HugepageSizes, ", "))
		}
		out = append(out, specs.LinuxHugepageLimit{Pagesize: l.GetPageSize(), Limit: l.GetLimit()})
	}
	return out, nil
}
