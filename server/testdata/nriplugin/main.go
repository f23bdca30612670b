// Command nriplugin is the NRI plugin crib's integration test installs in
// the plugin directory (as 10-adjuster): built on the nri module's stub,
// it logs every event it sees to the file its configuration names and
// adjusts each container it is asked about — an environment variable and
// an annotation, or, for a container named "wants-mem", /dev/mem, which a
// rootless crib must refuse.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	mu  sync.Mutex
	log *os.File
}

func (p *plugin) Configure(_ context.Context, config, _, _ string) (api.EventMask, error) {
	f, err := os.OpenFile(strings.TrimSpace(config), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	p.log = f
	userns, _ := os.Readlink("/proc/self/ns/user")
	p.record("Configure", fmt.Sprintf("uid=%d userns=%s", os.Getuid(), userns))
	return 0, nil
}

func (p *plugin) record(event, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.log, "%s %s\n", event, what)
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.GetName())
	return nil
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.GetName())
	return nil
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RemovePodSandbox", pod.GetName())
	return nil
}

func (p *plugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.GetName())
	adj := &api.ContainerAdjustment{}
	if c.GetName() == "wants-mem" {
		adj.AddDevice(&api.LinuxDevice{Path: "/dev/mem", Type: "c", Major: 1, Minor: 1})
		return adj, nil, nil
	}
	adj.AddEnv("NRI_ADJUSTED", "by-10-adjuster")
	adj.AddAnnotation("crib.test/nri", "adjusted")
	return adj, nil, nil
}

func (p *plugin) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", c.GetName())
	return nil
}

func (p *plugin) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", c.GetName())
	return nil, nil
}

func (p *plugin) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", c.GetName())
	return nil
}

func main() {
	s, err := stub.New(&plugin{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
