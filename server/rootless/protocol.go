package rootless

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/crib-dev/crib/internal/config"
)

// The bootstrap protocol: what one crib process tells the crib it
// re-executes (the parent its daemon, the node stage its daemon or
// command, `crib image` its copy inside crib's namespaces). It travels in
// the environment, because nsenter stands between the two and passes
// nothing else, under _CRIB_* names a person never sets. This file is the
// only one that reads or writes them: everything else reads a Handoff.

// handoffPrefix starts every variable of the protocol.
const handoffPrefix = "_CRIB_"

const (
	stageEnv         = "_CRIB_STAGE"           // "userns": the daemon child
	parentPIDEnv     = "_CRIB_PARENT_PID"      // the parent's pid, to check it lives
	configEnv        = "_CRIB_CONFIG"          // the parent's effective configuration, JSON
	hostPortStartEnv = "_CRIB_HOST_PORT_START" // the host's ip_unprivileged_port_start
	listenFDEnv      = "_CRIB_LISTEN_FD"       // the CRI socket systemd activated
	nodeStageEnv     = "_CRIB_NODE_STAGE"      // the node stage's job (node.go)
	nodeDaemonEnv    = "_CRIB_NODE_NAMESPACES" // "1": the daemon is in the node's PID and IPC namespaces
	imageStageEnv    = "_CRIB_IMAGE_STAGE"     // "inside": `crib image`, re-executed inside
	imageInputEnv    = "_CRIB_IMAGE_INPUT_FD"  // the archive `crib image import` opened
	parentEnv        = "_CRIB_HOSTSIDE"        // crib's handoff to the host-side program, JSON
	stageChild       = "userns"
	imageInside      = "inside"
)

// Handoff is the protocol's content; a zero field is a variable not set.
type Handoff struct {
	// Child marks the daemon the parent starts in crib's namespaces.
	Child bool
	// ParentPID is the parent's pid as the child sees it (0: not
	// visible, in the node's PID namespace).
	ParentPID int
	// Config is the effective configuration of the crib that re-executed
	// this one: uid 0 inside would otherwise compute root's defaults.
	Config *config.Config
	// HostPortStart is the host's net.ipv4.ip_unprivileged_port_start:
	// the child's own /proc/sys shows its namespace's value.
	HostPortStart *int
	// ListenFD is the descriptor of the CRI socket systemd activated.
	ListenFD int
	// NodeStage is the node stage's job: "daemon:PIDNS_FD:PID_PIPE_FD",
	// "exec:PIDNS_FD" or "pdeath" (node.go).
	NodeStage string
	// NodeNamespaces tells the daemon it runs in the node's PID and IPC
	// namespaces and must mount their file systems.
	NodeNamespaces bool
	// Guest marks `crib image` re-executed inside crib's namespaces.
	Guest bool
	// InputFD is the archive `crib image import FILE` opened before it
	// re-executed, read with the user's own access.
	InputFD int
	// Parent is what `crib serve` hands the host-side program it
	// executes (handover.go).
	Parent *ParentHandoff
}

// decodeHandoff reads the protocol out of environ. A malformed variable
// is reported; the others are decoded all the same.
func decodeHandoff(environ []string) (Handoff, error) {
	var h Handoff
	var first error
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, handoffPrefix) {
			continue
		}
		if err := h.set(k, v); err != nil && first == nil {
			first = fmt.Errorf("crib's internal %s from the crib that started this one: %w", k, err)
		}
	}
	return h, first
}

func (h *Handoff) set(k, v string) error {
	var err error
	switch k {
	case stageEnv:
		h.Child = v == stageChild
	case parentPIDEnv:
		h.ParentPID, err = strconv.Atoi(v)
	case configEnv:
		h.Config = &config.Config{}
		err = json.Unmarshal([]byte(v), h.Config)
	case hostPortStartEnv:
		var n int
		n, err = strconv.Atoi(v)
		h.HostPortStart = &n
	case listenFDEnv:
		h.ListenFD, err = strconv.Atoi(v)
	case nodeStageEnv:
		h.NodeStage = v
	case nodeDaemonEnv:
		h.NodeNamespaces = v == "1"
	case imageStageEnv:
		h.Guest = v == imageInside
	case imageInputEnv:
		h.InputFD, err = strconv.Atoi(v)
	case parentEnv:
		h.Parent = &ParentHandoff{}
		err = json.Unmarshal([]byte(v), h.Parent)
	}
	return err
}

// environ returns base without any variable of the protocol, plus h's.
func (h Handoff) environ(base []string) ([]string, error) {
	out := make([]string, 0, len(base)+4)
	for _, kv := range base {
		if !strings.HasPrefix(kv, handoffPrefix) {
			out = append(out, kv)
		}
	}
	add := func(k, v string) { out = append(out, k+"="+v) }
	if h.Child {
		add(stageEnv, stageChild)
	}
	if h.ParentPID != 0 {
		add(parentPIDEnv, strconv.Itoa(h.ParentPID))
	}
	if h.Config != nil {
		data, err := json.Marshal(h.Config)
		if err != nil {
			return nil, err
		}
		add(configEnv, string(data))
	}
	if h.HostPortStart != nil {
		add(hostPortStartEnv, strconv.Itoa(*h.HostPortStart))
	}
	if h.ListenFD != 0 {
		add(listenFDEnv, strconv.Itoa(h.ListenFD))
	}
	if h.NodeStage != "" {
		add(nodeStageEnv, h.NodeStage)
	}
	if h.NodeNamespaces {
		add(nodeDaemonEnv, "1")
	}
	if h.Guest {
		add(imageStageEnv, imageInside)
	}
	if h.InputFD != 0 {
		add(imageInputEnv, strconv.Itoa(h.InputFD))
	}
	if h.Parent != nil {
		data, err := json.Marshal(h.Parent)
		if err != nil {
			return nil, err
		}
		add(parentEnv, string(data))
	}
	return out, nil
}

// takeHandoff decodes this process's protocol and removes it from the
// environment, so that nothing crib starts (conmon, runc, a command run
// through `crib unshare`) inherits it unless crib passes it on itself.
func takeHandoff() (Handoff, error) {
	h, err := decodeHandoff(os.Environ())
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, handoffPrefix) {
			os.Unsetenv(k)
		}
	}
	return h, err
}

// peekHandoff decodes this process's protocol and leaves it in place.
func peekHandoff() (Handoff, error) { return decodeHandoff(os.Environ()) }
