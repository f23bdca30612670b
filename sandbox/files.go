package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/selinux/go-selinux"
	"github.com/opencontainers/selinux/go-selinux/label"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The host files crib's own namespace uses; a host-network pod sees these.
const (
	hostHostsFile  = "/etc/hosts"
	hostResolvFile = "/etc/resolv.conf"
)

// hostsFile is a pod's /etc/hosts: loopback names and its own address.
func hostsFile(ip, hostname string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if ip != "" && hostname != "" {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	return b.Bytes()
}

// resolvConf is the pod's /etc/resolv.conf from its DNSConfig. Missing
// parts come from crib's own resolv.conf (hostResolv): with no DNSConfig
// the pod gets crib's file as it is (the kubelet's "Default" policy).
func resolvConf(dns *runtimeapi.DNSConfig, hostResolv []byte) []byte {
	if len(dns.GetServers()) == 0 && len(dns.GetSearches()) == 0 && len(dns.GetOptions()) == 0 {
		return hostResolv
	}
	servers := dns.GetServers()
	if len(servers) == 0 {
		servers = nameservers(hostResolv)
	}
	var b bytes.Buffer
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return b.Bytes()
}

func nameservers(conf []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(conf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}

// writePodFiles writes hostname, hosts and resolv.conf into dir.
func writePodFiles(dir string, sb *Sandbox, hostname string, ownNet bool) error {
	hostResolv, err := os.ReadFile(hostResolvFile)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("reading %s: %w", hostResolvFile, err)
	}
	var hosts []byte
	if ownNet {
		hosts = hostsFile(sb.IP, hostname)
	} else if hosts, err = os.ReadFile(hostHostsFile); err != nil {
		hosts = hostsFile("", "")
	}
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	files := []struct {
		path *string
		name string
		data []byte
	}{
		{&sb.HostnamePath, "hostname", []byte(hostname + "\n")},
		{&sb.HostsPath, "hosts", hosts},
		{&sb.ResolvPath, "resolv.conf", resolvConf(sb.Config.GetDnsConfig(), hostResolv)},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return fmt.Errorf("writing the pod's %s: %w", f.name, err)
		}
		*f.path = p
	}
	return nil
}

func removePodFiles(sb *Sandbox) {
	for _, p := range []*string{&sb.HostnamePath, &sb.HostsPath, &sb.ResolvPath} {
		if *p != "" {
			os.Remove(*p)
			*p = ""
		}
	}
}

// mountShm gives the pod its own /dev/shm: a size-limited tmpfs.
func mountShm(path string, size int64, mountLabel string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if selinux.GetEnabled() {
		// The kernel refuses a context= option where SELinux is off.
		opts = label.FormatMountLabel(opts, mountLabel)
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mounting the pod's /dev/shm at %s: %w", path, err)
	}
	return nil
}
