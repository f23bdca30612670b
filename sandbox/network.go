package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/crib-dev/crib/internal/atomicfile"
	"github.com/crib-dev/crib/internal/errdefs"
)

// podIfName is the pod's interface inside its network namespace.
const podIfName = "eth0"

// defaultConfListName is the file crib writes into an empty conf dir.
const defaultConfListName = "10-crib.conflist"

// network drives the CNI plugins through libcni. The conflist is loaded
// lazily and reloaded while it is missing or broken, so an operator can
// fix the conf dir without restarting crib.
type network struct {
	confDir    string
	pluginDirs []string
	cni        *libcni.CNIConfig

	mu   sync.Mutex
	list *libcni.NetworkConfigList
}

func newNetwork(opts Options) (*network, error) {
	if opts.CNIConfDir == "" {
		return nil, fmt.Errorf("%w: sandbox manager needs a CNI conf dir", errdefs.ErrInvalidArgument)
	}
	n := &network{
		confDir:    opts.CNIConfDir,
		pluginDirs: opts.CNIPluginDirs,
		// The cache lives with the records: after a crash or a reboot it
		// holds the exact config (and port mappings) DEL must be given.
		cni: libcni.NewCNIConfigWithCacheDir(opts.CNIPluginDirs, filepath.Join(opts.Root, "cni", "cache"), nil),
	}
	// Rootless, crib owns its network namespace: one static masquerade rule
	// for the default subnet replaces the bridge plugin's per-pod chains,
	// which cost several iptables runs on every pod start and stop.
	perPodMasq := !opts.Rootless
	if err := writeDefaultConfList(opts.CNIConfDir, filepath.Join(opts.Root, "cni", "networks"), perPodMasq); err != nil {
		return nil, err
	}
	if !perPodMasq {
		if err := ensureStaticMasquerade(defaultSubnet); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// defaultSubnet is the pod range of crib's default network.
const defaultSubnet = "10.88.0.0/16"

// ensureStaticMasquerade adds, once, the rule that lets pods of the default
// subnet out through crib's namespace. Pods of another network list
// (a user's conflist) masquerade as that list says.
func ensureStaticMasquerade(subnet string) error {
	rule := []string{"POSTROUTING", "-s", subnet, "!", "-d", subnet,
		"-m", "comment", "--comment", "crib pods out", "-j", "MASQUERADE"}
	check := append([]string{"-w", "-t", "nat", "-C"}, rule...)
	if exec.Command("iptables", check...).Run() == nil {
		return nil
	}
	add := append([]string{"-w", "-t", "nat", "-A"}, rule...)
	if out, err := exec.Command("iptables", add...).CombinedOutput(); err != nil {
		return fmt.Errorf("adding the masquerade rule for %s: %w: %s", subnet, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// defaultConfList is the network crib sets up on first start: a bridge in
// crib's network namespace with masquerading (the bridge plugin's per pod,
// or crib's one static rule), host-local addresses whose
// leases live under crib's root (a rootless user cannot write
// /var/lib/cni), and portmap for host ports.
func defaultConfList(dataDir string, perPodMasq bool) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "crib",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": "cni0",
				"isGateway": true, "ipMasq": perPodMasq, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": dataDir,
					"ranges":  [][]map[string]string{{{"subnet": defaultSubnet, "gateway": "10.88.0.1"}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func writeDefaultConfList(dir, dataDir string, perPodMasq bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the CNI conf dir: %w", err)
	}
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return fmt.Errorf("reading the CNI conf dir %s: %w", dir, err)
	}
	if len(files) > 0 {
		return nil
	}
	b, err := defaultConfList(dataDir, perPodMasq)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, defaultConfListName), b, 0o644)
}

// config returns the network list in use: the first file of the conf dir
// in lexical order (the kubelet's rule), with all its plugins installed.
func (n *network) config() (*libcni.NetworkConfigList, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.list != nil {
		return n.list, nil
	}
	list, err := loadConfList(n.confDir)
	if err != nil {
		return nil, err
	}
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, n.pluginDirs); err != nil {
			return nil, fmt.Errorf("CNI plugin %q of network %q is not installed in %v", p.Network.Type, list.Name, n.pluginDirs)
		}
	}
	n.list = list
	return list, nil
}

func loadConfList(dir string) (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("reading the CNI conf dir %s: %w", dir, err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".conflist") {
			if l, err := libcni.ConfListFromFile(f); err == nil {
				return l, nil
			}
			continue
		}
		c, err := libcni.ConfFromFile(f)
		if err != nil {
			continue
		}
		if l, err := libcni.ConfListFromConf(c); err == nil {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no valid CNI network configuration in %s", dir)
}

func runtimeConf(sb *Sandbox, netns string) *libcni.RuntimeConf {
	md := sb.Config.GetMetadata()
	return &libcni.RuntimeConf{
		ContainerID: sb.ID,
		NetNS:       netns,
		IfName:      podIfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", md.GetNamespace()},
			{"K8S_POD_NAME", md.GetName()},
			{"K8S_POD_INFRA_CONTAINER_ID", sb.ID},
			{"K8S_POD_UID", md.GetUid()},
		},
	}
}

// portmapArgs is the portMappings capability as portmap reads it.
func portmapArgs(ports []PortMapping) []map[string]any {
	out := make([]map[string]any, 0, len(ports))
	for _, p := range ports {
		out = append(out, map[string]any{
			"hostPort": p.HostPort, "containerPort": p.ContainerPort,
			"protocol": p.Protocol, "hostIP": p.HostIP,
		})
	}
	return out
}

// attach runs CNI ADD for the pod and returns its addresses, IPv4 first.
func (n *network) attach(ctx context.Context, sb *Sandbox, ports []PortMapping) (string, []string, error) {
	list, err := n.config()
	if err != nil {
		return "", nil, fmt.Errorf("%w: pod network not ready: %v", errdefs.ErrUnavailable, err)
	}
	sb.NetworkName = list.Name
	rt := runtimeConf(sb, sb.NetNSPath)
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": portmapArgs(ports)}
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return "", nil, fmt.Errorf("attaching pod %s to CNI network %q: %w", sb.ID, list.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return "", nil, fmt.Errorf("reading the CNI result of pod %s: %w", sb.ID, err)
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	all := append(v4, v6...)
	if len(all) == 0 {
		return "", nil, fmt.Errorf("CNI network %q gave pod %s no address", list.Name, sb.ID)
	}
	return all[0], all[1:], nil
}

// detach runs CNI DEL for every attachment cached for the pod (the config
// and port mappings of the ADD, even if the conf dir changed since), or
// with the current network when nothing is cached (an ADD that failed
// midway). A netns that is gone is passed as "", which plugins accept for
// releasing addresses. host-local leases left by the pod are removed too.
func (n *network) detach(ctx context.Context, id string, sb *Sandbox) error {
	netns := ""
	if sb != nil && isNamespacePin(sb.NetNSPath) {
		netns = sb.NetNSPath
	}
	atts, err := n.cni.GetCachedAttachments(id)
	if err != nil {
		return fmt.Errorf("reading the CNI cache of pod %s: %w", id, err)
	}
	var errs []error
	for _, a := range atts {
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cached CNI config of pod %s: %w", id, err))
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		if err := n.cni.DelNetworkList(ctx, withoutIdlePortmap(list, a.CapabilityArgs), rt); err != nil {
			errs = append(errs, fmt.Errorf("detaching pod %s from CNI network %q: %w", id, list.Name, err))
		}
		errs = append(errs, removeLeases(list, id))
	}
	if len(atts) == 0 && sb != nil {
		if list, err := n.config(); err == nil {
			if err := n.cni.DelNetworkList(ctx, list, runtimeConf(sb, netns)); err != nil {
				errs = append(errs, fmt.Errorf("detaching pod %s from CNI network %q: %w", id, list.Name, err))
			}
			errs = append(errs, removeLeases(list, id))
		}
	}
	return errors.Join(errs...)
}

// withoutIdlePortmap drops the portmap plugins from a DEL when the ADD
// gave them no port mappings: portmap then set nothing up and has nothing
// to undo, and each plugin run is an exec (some 10 ms on a loaded node).
func withoutIdlePortmap(list *libcni.NetworkConfigList, caps map[string]any) *libcni.NetworkConfigList {
	if pm, ok := caps["portMappings"]; ok && !emptyMappings(pm) {
		return list
	}
	out := *list
	out.Plugins = nil
	for _, p := range list.Plugins {
		if p.Network.Type != "portmap" {
			out.Plugins = append(out.Plugins, p)
		}
	}
	return &out
}

// emptyMappings reports whether a cached portMappings capability holds
// no mapping (it reads back from the cache as a JSON array).
func emptyMappings(v any) bool {
	switch m := v.(type) {
	case nil:
		return true
	case []any:
		return len(m) == 0
	case []map[string]any:
		return len(m) == 0
	}
	return false
}

// cachedPods lists the pod ids the CNI cache holds attachments for.
func (n *network) cachedPods() []string {
	atts, _ := n.cni.GetCachedAttachments("")
	var ids []string
	seen := map[string]bool{}
	for _, a := range atts {
		if !seen[a.ContainerID] {
			seen[a.ContainerID] = true
			ids = append(ids, a.ContainerID)
		}
	}
	return ids
}

// hostLocalDataDirs lists the lease directories of the host-local IPAM
// plugins of a network (the plugin's default when dataDir is unset).
func hostLocalDataDirs(list *libcni.NetworkConfigList) []string {
	var dirs []string
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		}
		if json.Unmarshal(p.Bytes, &conf) != nil || conf.IPAM.Type != "host-local" {
			continue
		}
		dir := conf.IPAM.DataDir
		if dir == "" {
			dir = "/var/lib/cni/networks"
		}
		dirs = append(dirs, filepath.Join(dir, list.Name))
	}
	return dirs
}

// removeLeases deletes host-local lease files held by a pod: a lease file
// is named by its address and starts with the owner's container id.
func removeLeases(list *libcni.NetworkConfigList, id string) error {
	var errs []error
	for _, dir := range hostLocalDataDirs(list) {
		for _, lease := range leasesOf(dir, func(owner string) bool { return owner == id }) {
			if err := os.Remove(lease); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// leasesOf lists the lease files in dir whose owner matches.
func leasesOf(dir string, match func(owner string) bool) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || net.ParseIP(e.Name()) == nil {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if owner := leaseOwner(path); owner != "" && match(owner) {
			out = append(out, path)
		}
	}
	return out
}

func leaseOwner(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		return strings.TrimSpace(sc.Text())
	}
	return ""
}
