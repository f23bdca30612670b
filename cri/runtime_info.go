package cri

import (
	"context"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	runtimeName       = "crib"
	runtimeAPIVersion = "v1"
	// kubeAPIVersion is the legacy Version.version field: the CRI API
	// version the kubelet compares, not crib's own version.
	kubeAPIVersion = "0.1.0"
)

// Version answers the kubelet's first call.
func (s *RuntimeService) Version(_ context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.opts.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}

// ResourceLimitsEnforced is crib's own Status condition: true when pods
// and containers get the cgroup limits they ask for.
const ResourceLimitsEnforced = "ResourceLimitsEnforced"

// Status reports the RuntimeReady and NetworkReady conditions and, when
// verbose, the effective configuration and detected host features.
func (s *RuntimeService) Status(_ context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			condition(runtimeapi.RuntimeReady, s.opts.Host.RuntimeCondition),
			condition(runtimeapi.NetworkReady, s.opts.Host.NetworkCondition),
		}},
		RuntimeHandlers: s.runtimeHandlers(),
		Features:        &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if f := s.opts.Host.ResourceCondition; f != nil {
		// Not one of the two conditions the kubelet requires: a node
		// whose pods run unconfined still runs them, but says so.
		resp.Status.Conditions = append(resp.Status.Conditions, condition(ResourceLimitsEnforced, f))
	}
	if req.GetVerbose() && s.opts.Host.Info != nil {
		resp.Info = s.opts.Host.Info()
		if cidr := s.podCIDR.Load(); cidr != nil {
			resp.Info["kubeletPodCIDR"] = strconv.Quote(*cidr + " (recorded; crib's CNI conflist decides pod addresses)")
		}
	}
	return resp, nil
}

func condition(kind string, f func() Condition) *runtimeapi.RuntimeCondition {
	c := Condition{Reason: "NotChecked", Message: "crib has no check wired for " + kind}
	if f != nil {
		c = f()
	}
	return &runtimeapi.RuntimeCondition{Type: kind, Status: c.Ready, Reason: c.Reason, Message: c.Message}
}

func (s *RuntimeService) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	var out []*runtimeapi.RuntimeHandler
	for i, name := range s.opts.Host.Handlers {
		// Recursive read-only mounts are emulated where runc lacks "rro"
		// (runtime.readOnlySubmounts); pod user namespaces only where the
		// daemon found they work (Status info "userNamespaces" says why).
		features := &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: s.opts.Host.UserNamespaces}
		out = append(out, &runtimeapi.RuntimeHandler{Name: name, Features: features})
		if i == 0 {
			// The empty name is the default handler, as the kubelet expects.
			out = append(out, &runtimeapi.RuntimeHandler{Name: "", Features: features})
		}
	}
	return out
}

// RuntimeConfig tells the kubelet which cgroup driver to use.
func (s *RuntimeService) RuntimeConfig(_ context.Context, _ *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.opts.Host.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR from the kubelet. crib's
// pod addresses come from its own CNI configuration (the conflist in the
// CNI conf dir), so the CIDR is recorded for Status and not applied; an
// operator who wants the kubelet's range edits that conflist.
func (s *RuntimeService) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if err := validatePodCIDR(cidr); err != nil {
		return nil, err
	}
	s.podCIDR.Store(&cidr)
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
