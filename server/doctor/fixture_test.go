package doctor

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/config"
)

// The fixture tests describe a host as a file tree under t.TempDir(): the
// checks read /proc, /sys, /etc, /dev, /run and /var under Host.Root, so a
// rootless host with any defect can be built without changing this
// machine. What a tree cannot hold is injected: LookPath (a PATH search in
// the tree), and the two probes, which would otherwise mount an overlay
// and run programs.
//
// Fixture files must be owned by the fixture user (uid 1000) or by someone
// else, so building the trees needs root (this project's machines run the
// tests as root).

const (
	userName = "alice"
	userUID  = 1000
	userGID  = 1000
)

type fixture struct {
	t    *testing.T
	root string
	h    Host
	cfg  config.Config
	// overlayErr is what the overlay probe returns.
	overlayErr error
	// versionErr maps a program path to the error its --version gives.
	versionErr map[string]error
}

// newFixture builds a healthy rootless Debian host with cgroup v2
// delegated by systemd: every check passes on it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("building fixture trees owned by another user needs root")
	}
	f := &fixture{t: t, root: t.TempDir(), versionErr: map[string]error{}}
	f.write("/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n", 0o644)
	f.write("/etc/subuid", "alice:100000:65536\n", 0o644)
	f.write("/etc/subgid", "alice:100000:65536\n", 0o644)
	f.write("/usr/bin/newuidmap", "", 0o4755)
	f.write("/usr/bin/newgidmap", "", 0o4755)
	f.write("/proc/sys/user/max_user_namespaces", "28633\n", 0o644)
	f.write("/usr/sbin/runc", "", 0o755)
	f.write("/usr/bin/crun", "", 0o755)
	f.write("/usr/bin/conmon", "", 0o755)
	f.write("/usr/bin/slirp4netns", "", 0o755)
	f.write("/usr/bin/pasta", "", 0o755)
	f.write("/usr/bin/fuse-overlayfs", "", 0o755)
	f.write("/usr/local/bin/crib", "", 0o755)
	f.write("/usr/local/bin/crib-hostside", "", 0o755)
	f.write("/dev/net/tun", "", 0o666)
	f.write("/dev/fuse", "", 0o666)
	for _, p := range cniPlugins() {
		f.write("/usr/lib/cni/"+p, "", 0o755)
	}
	f.cgroupV2("/user.slice/user-1000.slice/user@1000.service/app.slice/crib.service", "cpuset cpu io memory pids", true)
	f.mkdir("/run/user/1000", 0o700)
	f.chown("/run/user/1000")
	f.mkdir("/run/systemd/system", 0o755)
	f.write("/var/lib/systemd/linger/alice", "", 0o644)

	f.h = Host{
		Root:   f.root,
		UID:    userUID,
		GID:    userGID,
		User:   userName,
		Getenv: mapEnv(map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}),
		// Debian's PATH for a user lacks /usr/sbin.
		LookPath:   f.lookPath("/usr/local/bin", "/usr/bin", "/bin"),
		Executable: "/usr/local/bin/crib",
		Probes: Probes{
			OverlayInUserNS: func() error { return f.overlayErr },
			Version: func(p string) (string, error) {
				if err := f.versionErr[p]; err != nil {
					return "", err
				}
				return path.Base(p) + " version 1.0", nil
			},
		},
	}
	f.cfg = config.Default(config.Env{UID: userUID, Home: "/home/alice", XDGRuntimeDir: "/run/user/1000"})
	return f
}

func mapEnv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// lookPath searches dirs of the tree like exec.LookPath searches PATH.
func (f *fixture) lookPath(dirs ...string) func(string) (string, error) {
	return func(name string) (string, error) {
		for _, d := range dirs {
			p := path.Join(d, name)
			if info, err := os.Stat(f.abs(p)); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", errors.New("executable file not found in $PATH")
	}
}

func (f *fixture) abs(p string) string { return filepath.Join(f.root, p) }

func (f *fixture) write(p, content string, mode fs.FileMode) {
	f.t.Helper()
	full := f.abs(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.chmod(p, mode)
}

// chmod sets mode including setuid, which os.WriteFile's umask path drops.
func (f *fixture) chmod(p string, mode fs.FileMode) {
	f.t.Helper()
	m := mode.Perm()
	if mode&0o4000 != 0 || mode&fs.ModeSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if err := os.Chmod(f.abs(p), m); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) mkdir(p string, mode fs.FileMode) {
	f.t.Helper()
	if err := os.MkdirAll(f.abs(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(f.abs(p), mode); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) remove(p string) {
	f.t.Helper()
	if err := os.RemoveAll(f.abs(p)); err != nil {
		f.t.Fatal(err)
	}
}

// chown gives p to the fixture user.
func (f *fixture) chown(paths ...string) {
	f.t.Helper()
	for _, p := range paths {
		if err := os.Lchown(f.abs(p), userUID, userGID); err != nil {
			f.t.Fatal(err)
		}
	}
}

// cgroupV2 mounts (in the fixture's mountinfo) a unified hierarchy with the
// process in cgroup own; delegated gives own to the user.
func (f *fixture) cgroupV2(own, controllers string, delegated bool) {
	f.write("/proc/self/mountinfo",
		"22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"+
			"30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
		0o444)
	f.write("/proc/self/cgroup", "0::"+own+"\n", 0o444)
	f.cgroupDir("/sys/fs/cgroup"+own, controllers, delegated)
}

func (f *fixture) cgroupDir(dir, controllers string, delegated bool) {
	f.mkdir(dir, 0o755)
	f.write(dir+"/cgroup.controllers", controllers+"\n", 0o444)
	f.write(dir+"/cgroup.procs", "", 0o644)
	f.write(dir+"/cgroup.subtree_control", "", 0o644)
	if delegated {
		f.chown(dir, dir+"/cgroup.procs", dir+"/cgroup.subtree_control")
	}
}

// cgroupV1Hybrid lays out this project's machines: v1 controllers under
// /sys/fs/cgroup/NAME, cgroup2 at /sys/fs/cgroup/unified with unifiedCtl
// as its controllers, and the process in memory cgroup /process_api/x.
func (f *fixture) cgroupV1Hybrid(unifiedCtl string) {
	f.write("/proc/self/mountinfo", strings.Join([]string{
		`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755`,
		`32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu`,
		`33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct`,
		`35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory`,
		`39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids`,
		`40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd`,
		`41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`,
	}, "\n")+"\n", 0o444)
	f.write("/proc/self/cgroup", "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/x\n2:cpuacct:/\n1:cpu:/\n0::/\n", 0o444)
	for _, d := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory/process_api/x", "/sys/fs/cgroup/pids"} {
		f.mkdir(d, 0o755)
		f.write(d+"/cgroup.procs", "", 0o644)
	}
	f.mkdir("/sys/fs/cgroup/unified", 0o755)
	f.write("/sys/fs/cgroup/unified/cgroup.controllers", unifiedCtl, 0o444)
}

func (f *fixture) run() Report {
	f.t.Helper()
	return Run(f.h, f.cfg)
}

func (f *fixture) check(id string) Check {
	f.t.Helper()
	c, ok := f.run().Check(id)
	if !ok {
		f.t.Fatalf("no check %s in the report", id)
	}
	return c
}
