// Package config owns crib's configuration: the keys, their defaults, the
// TOML file that sets them and the command-line flags that override them.
//
// Every key is declared once, as a field of Config with its TOML name, its
// flag name and its help text in struct tags; the file loader, the flags and
// `crib config` are all driven from those tags, so a key cannot exist in one
// place and not the others. This package must not act on the configuration
// (create directories, start anything): it only describes it.
package config

import (
	"os"
	"path/filepath"
	"strconv"
)

// Config is the effective configuration of one crib instance.
type Config struct {
	// Root holds durable state: images, container filesystems, pod and
	// container records.
	Root string `toml:"root" json:"root" flag:"root" help:"directory for durable state (images, records)"`
	// RunRoot holds state that must not survive a reboot: sockets, pinned
	// namespaces, monitor pid files. It should be on a tmpfs.
	RunRoot string `toml:"runroot" json:"runroot" flag:"runroot" help:"directory for runtime state (tmpfs; lost on reboot)"`
	// Listen is the path of the CRI gRPC unix socket; empty means
	// crib.sock in RunRoot.
	Listen string `toml:"listen" json:"listen" flag:"listen" help:"path of the CRI gRPC unix socket"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level" json:"log_level" flag:"log-level" help:"log level: debug, info, warn or error"`
	// LogFormat is text (journal-friendly) or json.
	LogFormat string `toml:"log_format" json:"log_format" flag:"log-format" help:"log format: text or json"`

	Storage   Storage   `toml:"storage" json:"storage"`
	Runtime   Runtime   `toml:"runtime" json:"runtime"`
	Network   Network   `toml:"network" json:"network"`
	Rootless  Rootless  `toml:"rootless" json:"rootless"`
	Cgroup    Cgroup    `toml:"cgroup" json:"cgroup"`
	Image     Image     `toml:"image" json:"image"`
	Streaming Streaming `toml:"streaming" json:"streaming"`
	Metrics   Metrics   `toml:"metrics" json:"metrics"`
	NRI       NRI       `toml:"nri" json:"nri"`
}

// Storage configures images and container filesystems.
type Storage struct {
	// Driver is auto, overlay, fuse-overlayfs or vfs. auto tries native
	// overlay inside the user namespace, then fuse-overlayfs, then vfs.
	Driver string `toml:"driver" json:"driver" flag:"storage-driver" help:"storage driver: auto, overlay, fuse-overlayfs or vfs"`
	// StorageConf is a containers storage.conf to honour; empty means the
	// usual places (~/.config/containers/storage.conf, /etc/containers/storage.conf).
	StorageConf string `toml:"storage_conf" json:"storage_conf" flag:"storage-conf" help:"path of a containers storage.conf (empty: the usual places)"`
}

// Runtime configures the OCI runtimes and the container monitor.
type Runtime struct {
	// DefaultHandler names the handler used when a request names none.
	// auto picks crun where it works on this host (crib doctor says why
	// not), else runc.
	DefaultHandler string `toml:"default_handler" json:"default_handler" flag:"default-runtime" help:"default CRI runtime handler: auto, runc or crun"`
	// RuncPath and CrunPath locate the OCI runtimes behind the handlers of
	// the same names; empty means search PATH and /usr/sbin.
	RuncPath string `toml:"runc_path" json:"runc_path" flag:"runc-path" help:"path of runc (empty: search PATH)"`
	CrunPath string `toml:"crun_path" json:"crun_path" flag:"crun-path" help:"path of crun (empty: search PATH)"`
	// ConmonPath locates the container monitor.
	ConmonPath string `toml:"conmon_path" json:"conmon_path" flag:"conmon-path" help:"path of conmon (empty: search PATH)"`
}

// Network configures crib's own network namespace and pod networking.
type Network struct {
	// Outbound is how crib's network namespace reaches the outside:
	// auto, slirp4netns, pasta or none. Ignored when running as root.
	Outbound string `toml:"outbound" json:"outbound" flag:"network-outbound" help:"outbound network for crib's namespace: auto, slirp4netns, pasta or none"`
	// CNIConfDir holds CNI network configurations; crib writes a default
	// bridge conflist there on first start when it is empty. Empty means
	// cni/net.d under Root (/etc/crib/cni/net.d as root).
	CNIConfDir string `toml:"cni_conf_dir" json:"cni_conf_dir" flag:"cni-conf-dir" help:"CNI configuration directory"`
	// CNIPluginDirs are searched in order for CNI plugin binaries.
	CNIPluginDirs []string `toml:"cni_plugin_dirs" json:"cni_plugin_dirs" flag:"cni-plugin-dir" help:"CNI plugin directories (repeatable, or comma-separated)"`
}

// Rootless configures crib's own namespaces when it runs unprivileged.
type Rootless struct {
	// CopyUp lists directories that crib's mount namespace replaces with a
	// writable tmpfs holding the host's entries (sub-directories bound,
	// files linked), as rootlesskit's --copy-up does, so that a program
	// run through `crib unshare` (a rootless kubelet) can create
	// /var/lib/kubelet, /etc/kubernetes or /run/... without touching the
	// host. Only new entries are writable; the host's stay as they are.
	// Takes effect when crib's namespaces are made; an empty list turns
	// it off.
	CopyUp []string `toml:"copy_up" json:"copy_up" flag:"copy-up" help:"directories crib's mount namespace makes writable as tmpfs copies (repeatable, or comma-separated)"`
}

// Cgroup configures how pods and containers are confined.
type Cgroup struct {
	// Manager is auto, cgroupfs or none. auto picks cgroupfs where crib
	// has a delegated cgroup (under systemd: the one systemd delegates),
	// else none (pods unconfined, reported by Status and crib doctor).
	Manager string `toml:"manager" json:"manager" flag:"cgroup-manager" help:"cgroup manager: auto, cgroupfs or none"`
	// Parent is the cgroup under which crib makes pod cgroups; empty means
	// crib's own cgroup.
	Parent string `toml:"parent" json:"parent" flag:"cgroup-parent" help:"cgroup under which pod cgroups are made (empty: crib's own)"`
}

// Image configures where images come from.
type Image struct {
	// RegistriesConf is an extra registries.conf read after the usual
	// places; its entries win.
	RegistriesConf string `toml:"registries_conf" json:"registries_conf" flag:"registries-conf" help:"extra registries.conf (v2) whose entries override the usual places"`
	// PolicyPath is the signature policy.json; empty means the user's,
	// then the system's, then crib's documented default (accept anything).
	PolicyPath string `toml:"policy_path" json:"policy_path" flag:"signature-policy" help:"signature policy.json (empty: ~/.config/containers/policy.json, then /etc/containers/policy.json)"`
}

// Streaming configures the exec/attach/port-forward server.
type Streaming struct {
	Address string `toml:"address" json:"address" flag:"streaming-address" help:"address the streaming server binds, in the host and in crib's namespaces"`
	Port    int    `toml:"port" json:"port" flag:"streaming-port" help:"streaming server port (0: pick a free one)"`
	TLSCert string `toml:"tls_cert" json:"tls_cert" flag:"streaming-tls-cert" help:"TLS certificate for the streaming server (empty: plain HTTP)"`
	TLSKey  string `toml:"tls_key" json:"tls_key" flag:"streaming-tls-key" help:"TLS key for the streaming server"`
}

// Metrics configures the Prometheus metrics listener, which is off
// unless an address is given. Rootless, crib listens on the same address
// in its own network namespace and in the host's, as the streaming server
// does, so a scraper on the host reaches it. The endpoint has no
// authentication (as containerd's and CRI-O's): anyone who reaches the
// address reads pod, container and image names, so crib warns at start-up
// when the address is not a loopback one.
type Metrics struct {
	Address string `toml:"address" json:"address" flag:"metrics-address" help:"host:port of the Prometheus metrics listener, e.g. 127.0.0.1:9090 (empty: off)"`
}

// NRI configures the Node Resource Interface plugin host
// (github.com/containerd/nri): plugins that see every pod and container
// event and may adjust a container's OCI spec before it is created.
// Plugins run as the user that runs crib, in crib's namespaces (see
// package nri), and the socket is reachable by that user only.
type NRI struct {
	// Enable turns the host on; off, crib sends no events and opens no
	// socket.
	Enable bool `toml:"enable" json:"enable" flag:"nri" help:"host NRI plugins (github.com/containerd/nri)"`
	// SocketPath is where external plugins connect; empty means nri.sock
	// in RunRoot (a directory only crib's user can enter).
	SocketPath string `toml:"socket_path" json:"socket_path" flag:"nri-socket" help:"NRI socket external plugins connect to (empty: nri.sock in the runroot)"`
	// PluginDir holds pre-installed plugins, started by crib as
	// IDX-NAME executables (e.g. 10-logger); empty means nri/plugins under
	// Root (/opt/nri/plugins as root).
	PluginDir string `toml:"plugin_dir" json:"plugin_dir" flag:"nri-plugin-dir" help:"directory of pre-installed NRI plugins crib starts (empty: nri/plugins in the root)"`
	// PluginConfigDir holds configuration for pre-installed plugins
	// (IDX-NAME.conf or NAME.conf); empty means nri/conf.d under Root
	// (/etc/nri/conf.d as root).
	PluginConfigDir string `toml:"plugin_config_dir" json:"plugin_config_dir" flag:"nri-plugin-config-dir" help:"configuration directory of pre-installed NRI plugins (empty: nri/conf.d in the root)"`
	// RegistrationTimeout bounds a plugin's registration; RequestTimeout
	// bounds each event a plugin handles. A plugin that misses either is
	// dropped, so a hung plugin delays a request by at most this much.
	RegistrationTimeout string `toml:"registration_timeout" json:"registration_timeout" flag:"nri-registration-timeout" help:"how long a plugin may take to register (Go duration)"`
	RequestTimeout      string `toml:"request_timeout" json:"request_timeout" flag:"nri-request-timeout" help:"how long a plugin may take to handle one event (Go duration)"`
}

// Env is the part of the process environment defaults depend on; it is a
// value so tests can give any home or uid.
type Env struct {
	UID           int
	Home          string
	XDGRuntimeDir string
	XDGConfigHome string
	XDGDataHome   string
}

// CurrentEnv reads Env from the running process.
func CurrentEnv() Env {
	home, _ := os.UserHomeDir()
	return Env{
		UID:           os.Getuid(),
		Home:          home,
		XDGRuntimeDir: os.Getenv("XDG_RUNTIME_DIR"),
		XDGConfigHome: os.Getenv("XDG_CONFIG_HOME"),
		XDGDataHome:   os.Getenv("XDG_DATA_HOME"),
	}
}

// Rootful reports whether the environment is real root.
func (e Env) Rootful() bool { return e.UID == 0 }

// RuntimeDir is $XDG_RUNTIME_DIR, or /run/user/UID when unset (the
// directory pam_systemd would have made), or /run as root.
func (e Env) RuntimeDir() string {
	if e.Rootful() {
		return "/run"
	}
	if e.XDGRuntimeDir != "" {
		return e.XDGRuntimeDir
	}
	return filepath.Join("/run/user", strconv.Itoa(e.UID))
}

// ConfigPath is where the config file is looked for.
func (e Env) ConfigPath() string {
	if e.Rootful() {
		return "/etc/crib/crib.toml"
	}
	base := e.XDGConfigHome
	if base == "" {
		base = filepath.Join(e.Home, ".config")
	}
	return filepath.Join(base, "crib", "crib.toml")
}

func (e Env) dataHome() string {
	if e.XDGDataHome != "" {
		return e.XDGDataHome
	}
	return filepath.Join(e.Home, ".local", "share")
}

// Default is the configuration crib uses with no file and no flags.
func Default(e Env) Config {
	root := filepath.Join(e.dataHome(), "crib")
	if e.Rootful() {
		root = "/var/lib/crib"
	}
	return Config{
		Root:      root,
		RunRoot:   filepath.Join(e.RuntimeDir(), "crib"),
		LogLevel:  "info",
		LogFormat: "text",
		Storage:   Storage{Driver: "auto"},
		Runtime:   Runtime{DefaultHandler: "auto"},
		Network: Network{
			Outbound:      "auto",
			CNIPluginDirs: []string{"/usr/lib/cni", "/opt/cni/bin"},
		},
		Rootless:  Rootless{CopyUp: []string{"/etc", "/run", "/var/lib", "/var/log"}},
		Cgroup:    Cgroup{Manager: "auto"},
		Streaming: Streaming{Address: "127.0.0.1"},
		NRI:       NRI{RegistrationTimeout: "5s", RequestTimeout: "2s"},
	}
}

// Finalize fills the keys whose defaults follow other keys (the socket in
// the runroot, the CNI directory in the root), so that moving --runroot
// moves the socket too unless --listen says otherwise.
func (c Config) Finalize() Config {
	if c.Listen == "" {
		c.Listen = filepath.Join(c.RunRoot, "crib.sock")
	}
	if c.Network.CNIConfDir == "" {
		c.Network.CNIConfDir = filepath.Join(c.Root, "cni", "net.d")
		if c.Root == "/var/lib/crib" {
			c.Network.CNIConfDir = "/etc/crib/cni/net.d"
		}
	}
	c.NRI = c.NRI.finalize(c.Root, c.RunRoot)
	return c
}

func (n NRI) finalize(root, runRoot string) NRI {
	rootful := root == "/var/lib/crib"
	if n.SocketPath == "" {
		n.SocketPath = filepath.Join(runRoot, "nri.sock")
	}
	if n.PluginDir == "" {
		n.PluginDir = filepath.Join(root, "nri", "plugins")
		if rootful {
			n.PluginDir = "/opt/nri/plugins"
		}
	}
	if n.PluginConfigDir == "" {
		n.PluginConfigDir = filepath.Join(root, "nri", "conf.d")
		if rootful {
			n.PluginConfigDir = "/etc/nri/conf.d"
		}
	}
	return n
}
