package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/crib-dev/crib/internal/config"
)

// page is one command's manual: `crib --help` and `crib CMD --help` print
// it in the sections of a man page. The options are not written here:
// they come from the command's flags and the configuration keys, so the
// manual cannot drift from what crib accepts.
type page struct {
	summary     string
	synopsis    []string
	description string
	files       string
	examples    string
}

const filesConfig = `~/.config/crib/crib.toml (as root /etc/crib/crib.toml)
    The configuration file; every key is also an option, and options win.
    'crib config' prints the effective configuration in this format.`

var pages = map[string]page{
	"": {
		summary:  "a Kubernetes CRI runtime that runs without root",
		synopsis: []string{"crib COMMAND [OPTIONS] [ARGS]", "crib COMMAND --help", "crib --version"},
		description: `crib serves the Kubernetes Container Runtime Interface (CRI v1) on a
unix socket, for a kubelet, crictl or critest. Run by an ordinary user it
puts itself and every pod in a user namespace that user owns; run by root
it serves from the host's namespaces.`,
		files: filesConfig + `
$XDG_RUNTIME_DIR/crib/crib.sock (as root /run/crib/crib.sock)
    The CRI socket (mode 0600).`,
		examples: `crib serve                          # serve in the foreground
crib doctor                         # what is missing on this host, and the fix
crib install-service                # run crib as a systemd user service
crib crictl-config --write          # point crictl at crib`,
	},
	"serve": {
		summary:  "serve CRI v1 on a unix socket",
		synopsis: []string{"crib serve [OPTIONS]"},
		description: `Serves the CRI RuntimeService and ImageService until SIGTERM or SIGINT.
As an ordinary user crib re-executes itself in a new user, mount and
network namespace (uid 0 inside is you, your /etc/subuid range the rest)
and keeps a parent in the host's namespaces for host ports and pulls.
Pods and containers outlive crib: a restarted crib re-attaches to them.

Under systemd (crib install-service) crib reports readiness and stopping
to the service manager, and serves the socket systemd passes when
crib.socket activates it.`,
		files: filesConfig + `
~/.local/share/crib (as root /var/lib/crib)
    Images, container filesystems, pod and container records (--root).
$XDG_RUNTIME_DIR/crib (as root /run/crib)
    Runtime state: the socket, pinned namespaces, monitors (--runroot).`,
		examples: `crib serve
crib serve --log-level debug --metrics-address 127.0.0.1:9090`,
	},
	"doctor": {
		summary:     "check this host's prerequisites and print fixes",
		synopsis:    []string{"crib doctor [--json] [OPTIONS]"},
		description: `Checks every program, kernel feature and permission crib needs, and for each that fails prints the command that fixes it. Exits 1 when a hard requirement is missing.`,
		examples: `crib doctor
crib doctor --json | jq '.checks[] | select(.status != "ok")'`,
	},
	"config": {
		summary:     "print the effective configuration as TOML",
		synopsis:    []string{"crib config [OPTIONS]"},
		description: `Prints the configuration crib would use, the file and the options applied, in the file's own format, each key with its option and meaning.`,
		files:       filesConfig,
		examples:    `crib config > ~/.config/crib/crib.toml   # start a configuration file`,
	},
	"unshare": {
		summary:  "run a command inside a running crib's namespaces",
		synopsis: []string{"crib unshare [OPTIONS] [-- COMMAND [ARGS]]"},
		description: `Runs COMMAND (default: $SHELL) as root inside the user, mount, network, PID and IPC namespaces of a running rootless crib: where pods' IPs and crib's store are reachable, where a rootless kubelet runs, and where the processes are those a hostPID pod sees. crib unshare waits for COMMAND, passes on SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 (and SIGINT and SIGQUIT when not on a terminal), and exits with its status.

There /etc, /run, /var/lib and /var/log are crib's writable copies of the
host's (rootless.copy_up): COMMAND may create files and directories in
them (a kubelet's /var/lib/kubelet) without touching the host's.`,
		examples: `crib unshare -- ip addr
crib kubelet-config --standalone --write
crib unshare -- kubelet --config ~/.config/crib/kubelet.yaml --root-dir ~/.local/share/crib/kubelet`,
	},
	"image": {
		summary:  "list, pull or import images in crib's store",
		synopsis: []string{"crib image ls [OPTIONS]", "crib image pull [OPTIONS] REF", "crib image import [OPTIONS] FILE|-"},
		description: `Works on crib's image store directly, without the daemon. Rootless,
the store belongs to crib's user namespace, so these commands re-enter
crib's namespaces, which exist while crib runs or while pods remain:
start crib with 'crib serve' first.`,
		examples: `crib image ls
podman save IMAGE | crib image import -`,
	},
	"image ls": {
		summary:     "list the stored images",
		synopsis:    []string{"crib image ls [OPTIONS]"},
		description: `Lists REPOSITORY, TAG, IMAGE ID, SIZE and CREATED of every stored image.`,
	},
	"image pull": {
		summary:     "pull an image into crib's store",
		synopsis:    []string{"crib image pull [OPTIONS] REF"},
		description: `Pulls REF through registries.conf, as a CRI pull does; on a terminal it shows a progress bar per layer.`,
		examples:    `crib image pull docker.io/library/busybox:latest`,
	},
	"image import": {
		summary:     "load an OCI archive or docker-archive",
		synopsis:    []string{"crib image import [OPTIONS] FILE|-"},
		description: `Loads an image archive (podman save, docker save, skopeo copy) with its tags, from FILE or standard input: for an air-gapped node.`,
		examples:    `podman save busybox | crib image import -`,
	},
	"crictl-config": {
		summary:  "print or write the crictl configuration for this crib",
		synopsis: []string{"crib crictl-config [--write [--file FILE]] [OPTIONS]"},
		description: `Prints a crictl.yaml whose runtime and image endpoints are this crib's
socket, so crictl needs no flags. crictl reads /etc/crictl.yaml, or the
file $CRI_CONFIG_FILE names. With --write, crib writes the file there:
/etc/crictl.yaml as root; as a user, ~/.config/crib/crictl.yaml, and it
prints the export line for your shell profile.`,
		files: `/etc/crictl.yaml
    crictl's configuration (root).
~/.config/crib/crictl.yaml
    crictl's configuration for this user; crictl reads it through
    CRI_CONFIG_FILE.`,
		examples: `crib crictl-config --write && export CRI_CONFIG_FILE=~/.config/crib/crictl.yaml
crictl ps`,
	},
	"kubelet-config": {
		summary:  "print or write a KubeletConfiguration for a kubelet on this crib",
		synopsis: []string{"crib kubelet-config [--standalone | --client-ca-file CA] [--write [--file FILE]] [OPTIONS]"},
		description: `Prints the KubeletConfiguration (kubelet.config.k8s.io/v1beta1) that a
kubelet v1.37 needs to run inside this crib's namespaces: crib's socket,
the cgroup driver crib's RuntimeConfig reports (crib must be running),
failCgroupV1: false on a cgroup v1 host and, rootless, the
KubeletInUserNamespace feature gate, no QoS cgroups and no
local-storage isolation. Static pod manifests, pod logs and the kubelet's
root directory are directories of the user's on the host, so manifests
can be dropped in and logs read without entering crib's namespaces.

The kubelet itself runs through 'crib unshare', which gives it crib's
network and a mount namespace where /etc, /run, /var/lib and /var/log are
writable copies (see rootless.copy_up): contrib/kubelet/crib-kubelet.sh
does all of it. With --standalone the kubelet's API, on crib's loopback
only, takes anonymous requests; without it, the kubelet asks the API
server it joins (webhook authentication and authorization), and
--client-ca-file names the CA of the API server's client certificate.`,
		files: `~/.config/crib/kubelet.yaml
    The configuration --write writes.
~/.config/crib/manifests/
    Static pod manifests (staticPodPath).
~/.local/share/crib/pod-logs/, ~/.local/share/crib/kubelet/
    Pod logs (podLogsDir) and the kubelet's --root-dir.`,
		examples: `crib kubelet-config --standalone --write
crib unshare kubelet --config ~/.config/crib/kubelet.yaml --root-dir ~/.local/share/crib/kubelet`,
	},
	"install-service": {
		summary:  "install crib as a systemd service",
		synopsis: []string{"crib install-service [--dir DIR] [--print] [OPTIONS]"},
		description: `Writes crib.service and crib.socket for this crib binary and this
configuration's socket: user units in ~/.config/systemd/user, or, as root,
system units in /etc/systemd/system. It prints the systemctl commands
that enable them; it does not run them.

crib.service is Type=notify (crib reports when it serves) and restarts
crib on failure; only crib itself is stopped with the unit
(KillMode=process), so pods keep running while crib restarts; Delegate=yes gives
crib the unit's cgroup subtree for pod cgroups. crib.socket holds the CRI
socket, so clients can connect while crib starts.

A user's services stop when the user's last session ends unless lingering
is on: 'loginctl enable-linger USER' (once; as root if the system asks).`,
		files: `~/.config/systemd/user/crib.service, crib.socket
    The user units.
/etc/systemd/system/crib.service, crib.socket
    The system units (root).`,
		examples: `crib install-service
systemctl --user daemon-reload && systemctl --user enable --now crib.socket crib.service
journalctl --user -u crib -f`,
	},
	"completion": {
		summary:  "print a shell completion script",
		synopsis: []string{"crib completion bash|zsh|fish"},
		description: `Prints the completion script of crib's commands and options for the
shell named.`,
		examples: `source <(crib completion bash)                              # bash, this shell
crib completion zsh > "${fpath[1]}/_crib"                    # zsh
crib completion fish > ~/.config/fish/completions/crib.fish  # fish`,
	},
	"version": {summary: "print crib's version", synopsis: []string{"crib version"}},
	"help":    {summary: "print the manual of crib or of one command", synopsis: []string{"crib help [COMMAND]"}},
}

// topLevel is the command list of `crib --help`, in order.
var topLevel = []string{"serve", "doctor", "config", "unshare", "image", "crictl-config", "kubelet-config", "install-service", "completion", "version", "help"}

func runHelp(args []string) int {
	name := strings.Join(args, " ")
	if _, ok := pages[name]; !ok {
		fmt.Fprintf(os.Stderr, "crib help: no command %q\n", name)
		writeShortUsage(os.Stderr)
		return 2
	}
	writeHelp(os.Stdout, name, config.CurrentEnv())
	return 0
}

func writeShortUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: crib COMMAND [OPTIONS]\nCommands: %s\nRun 'crib --help' for the manual.\n", strings.Join(topLevel, ", "))
}

// writeHelp prints the manual page of a command ("" for crib itself);
// env gives the defaults the options show.
func writeHelp(w io.Writer, name string, env config.Env) {
	p := pages[name]
	title := strings.TrimSpace("crib " + name)
	section(w, "NAME", title+" - "+p.summary)
	section(w, "SYNOPSIS", strings.Join(p.synopsis, "\n"))
	section(w, "DESCRIPTION", reflow(p.description))
	switch name {
	case "":
		section(w, "COMMANDS", commandTable(topLevel, ""))
	case "image":
		section(w, "COMMANDS", commandTable([]string{"ls", "pull", "import"}, "image "))
	}
	if cmd, ok := commands()[name]; ok {
		fs, _, _ := newFlagSet(cmd, env)
		section(w, "OPTIONS", ownOptions(fs))
		section(w, "CONFIGURATION OPTIONS", "Each sets the configuration key named in brackets; options win over\nthe file.\n\n"+configOptions(env))
	}
	section(w, "FILES", p.files)
	section(w, "EXAMPLES", p.examples)
	if name != "" {
		section(w, "SEE ALSO", "crib --help, crib doctor, crictl(1)")
	}
}

func section(w io.Writer, title, body string) {
	if strings.TrimSpace(body) == "" {
		return
	}
	fmt.Fprintf(w, "%s\n", title)
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if line == "" {
			fmt.Fprintln(w)
			continue
		}
		fmt.Fprintf(w, "    %s\n", line)
	}
	fmt.Fprintln(w)
}

func commandTable(names []string, prefix string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%-16s %s\n", n, pages[prefix+n].summary)
	}
	return b.String()
}

// ownOptions lists the flags that are not configuration keys.
func ownOptions(fs *flag.FlagSet) string {
	keys := configFlags()
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if keys[f.Name] {
			return
		}
		if isBool(f) {
			fmt.Fprintf(&b, "--%s\n", f.Name)
		} else {
			fmt.Fprintf(&b, "--%s %s\n", f.Name, placeholder(f.Name))
		}
		b.WriteString(wrap(f.Usage, 4, 72))
	})
	fmt.Fprintf(&b, "--help\n%s", wrap("print this page", 4, 72))
	return b.String()
}

// configOptions lists every configuration key as its option.
func configOptions(env config.Env) string {
	def := config.Default(env)
	var b strings.Builder
	for _, k := range config.Keys(&def) {
		fmt.Fprintf(&b, "--%s %s  [%s]\n", k.Flag, placeholder(k.Flag), k.Name)
		b.WriteString(wrap(k.Help+" (default "+k.String()+")", 4, 72))
	}
	return b.String()
}

func configFlags() map[string]bool {
	var def config.Config
	out := map[string]bool{}
	for _, k := range config.Keys(&def) {
		out[k.Flag] = true
	}
	return out
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// placeholder names an option's value after the last word of the option.
func placeholder(name string) string {
	parts := strings.Split(name, "-")
	last := parts[len(parts)-1]
	switch last {
	case "root", "runroot", "dir":
		return "DIR"
	case "path", "conf", "config", "file", "cert", "key", "listen", "policy":
		return "FILE"
	case "port":
		return "PORT"
	case "address":
		return "ADDR"
	}
	return "VALUE"
}

// reflow wraps each paragraph (paragraphs are separated by blank lines).
func reflow(text string) string {
	var out []string
	for _, para := range strings.Split(text, "\n\n") {
		out = append(out, strings.TrimRight(wrap(para, 0, 72), "\n"))
	}
	return strings.Join(out, "\n\n")
}

// wrap breaks text into lines of at most width columns, each indented.
func wrap(text string, indent, width int) string {
	var b strings.Builder
	pad := strings.Repeat(" ", indent)
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width-indent {
			b.WriteString(pad + line + "\n")
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		b.WriteString(pad + line + "\n")
	}
	return b.String()
}
