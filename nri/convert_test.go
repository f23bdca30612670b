package nri

import (
	"testing"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResourcesRoundTrip(t *testing.T) {
	in := &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 28,
		CpusetCpus: "0-1", CpusetMems: "0", MemorySwapLimitInBytes: 1 << 29,
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
		Unified:        map[string]string{"memory.high": "1000000"},
	}
	if out := criResources(nil, apiResources(in)); !proto.Equal(in, out) {
		t.Fatalf("round trip:\n%v\n%v", in, out)
	}
}

// A plugin's update sets only what it names: the rest of the container's
// resources stay.
func TestCRIResourcesLaysOver(t *testing.T) {
	base := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 1 << 28, CpusetCpus: "0-1"}
	upd := &api.LinuxResources{Memory: &api.LinuxMemory{Limit: api.Int64(1 << 30)}}
	out := criResources(base, upd)
	want := &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 1 << 30, CpusetCpus: "0-1"}
	if !proto.Equal(out, want) {
		t.Fatalf("got %v, want %v", out, want)
	}
	if base.MemoryLimitInBytes != 1<<28 {
		t.Fatal("the base was changed")
	}
}

func TestContainerName(t *testing.T) {
	c := container(Container{ID: "c", PodID: "p", State: runtimeapi.ContainerState_CONTAINER_EXITED,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "web"}, Command: []string{"sh"}, Args: []string{"-c", "x"}}})
	if c.GetName() != "web" || c.GetState() != api.ContainerState_CONTAINER_STOPPED || len(c.GetArgs()) != 3 {
		t.Fatalf("container: %v", c)
	}
}
