package cri

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/runtime"
)

func TestStatusReportsResourceLimits(t *testing.T) {
	ready := func() Condition { return Condition{Ready: true} }
	cases := []struct {
		name     string
		resource func() Condition
		want     *runtimeapi.RuntimeCondition // nil: no such condition
	}{
		{"not wired", nil, nil},
		{"confined", ready, &runtimeapi.RuntimeCondition{Type: ResourceLimitsEnforced, Status: true}},
		{"unconfined", func() Condition {
			return Condition{Reason: "NoDelegatedCgroup", Message: "cgroup v2: not delegated"}
		}, &runtimeapi.RuntimeCondition{Type: ResourceLimitsEnforced, Reason: "NoDelegatedCgroup", Message: "cgroup v2: not delegated"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := NewRuntimeService(Options{Host: Host{RuntimeCondition: ready, NetworkCondition: ready, ResourceCondition: c.resource}})
			resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got *runtimeapi.RuntimeCondition
			for _, cond := range resp.Status.Conditions {
				if cond.Type == ResourceLimitsEnforced {
					got = cond
				}
			}
			if (got == nil) != (c.want == nil) || got != nil && (got.Status != c.want.Status || got.Reason != c.want.Reason || got.Message != c.want.Message) {
				t.Errorf("condition %v, want %v", got, c.want)
			}
			if len(resp.Status.Conditions) < 2 || resp.Status.Conditions[0].Type != runtimeapi.RuntimeReady || resp.Status.Conditions[1].Type != runtimeapi.NetworkReady {
				t.Errorf("the kubelet's two conditions must stay first: %v", resp.Status.Conditions)
			}
		})
	}
}

// An unconfined container had none of its limits applied: ContainerStatus
// must not report them as if it had.
func TestContainerStatusResources(t *testing.T) {
	limits := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000}
	cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{Resources: limits}}
	for _, unconfined := range []bool{false, true} {
		c := &runtime.Container{ID: "c1", Config: cfg, CreatedAt: time.Now(), Unconfined: unconfined}
		got := containerStatus(c).GetResources().GetLinux()
		if unconfined && got != nil {
			t.Errorf("unconfined container reports resources %v", got)
		}
		if !unconfined && got.GetMemoryLimitInBytes() != 64<<20 {
			t.Errorf("confined container reports %v", got)
		}
	}
}

// Every handler, the default "" included, advertises user namespaces
// exactly when the daemon found they work.
func TestStatusAdvertisesUserNamespaces(t *testing.T) {
	for _, works := range []bool{false, true} {
		s := NewRuntimeService(Options{Host: Host{Handlers: []string{"runc", "crun"}, UserNamespaces: works}})
		resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.RuntimeHandlers) != 3 {
			t.Fatalf("handlers %v", resp.RuntimeHandlers)
		}
		for _, h := range resp.RuntimeHandlers {
			if h.GetFeatures().GetUserNamespaces() != works {
				t.Errorf("works=%v: handler %q advertises user namespaces %v", works, h.Name, h.GetFeatures().GetUserNamespaces())
			}
		}
	}
}
