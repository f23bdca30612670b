package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// cgroupMount is one cgroup filesystem from /proc/self/mountinfo.
type cgroupMount struct {
	point       string   // where it is mounted, a host path
	root        string   // which cgroup of the hierarchy is mounted there
	controllers []string // v1 only
}

// cgroupLayout is how cgroups are mounted and where this process sits.
type cgroupLayout struct {
	version int // 2 unified, 1 legacy or hybrid, 0 none found
	hybrid  bool
	unified *cgroupMount // the cgroup2 mount: /sys/fs/cgroup, or /sys/fs/cgroup/unified when hybrid
	v1      []cgroupMount
	// own maps a v1 controller, or "" for the v2 hierarchy, to the cgroup
	// this process is in (from /proc/self/cgroup).
	own map[string]string
	// unifiedControllers is cgroup.controllers of the hybrid cgroup2 root:
	// crun refuses a hybrid host where it is not empty.
	unifiedControllers []string
	problem            string
}

// neededControllers are the ones CRI resource limits and stats use.
func neededControllers(version int) []string {
	if version == 2 {
		return []string{"cpu", "memory", "pids"}
	}
	return []string{"cpu", "cpuacct", "memory", "pids"}
}

// v1Controllers are the v1 controllers reported, in report order.
func v1Controllers() []string {
	return []string{"cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb"}
}

func readCgroupLayout(h Host) cgroupLayout {
	l := cgroupLayout{own: map[string]string{}}
	mounts, err := readMountinfo(h.path("/proc/self/mountinfo"))
	if err != nil {
		l.problem = err.Error()
		return l
	}
	var hybridUnified *cgroupMount
	for _, m := range mounts {
		switch m.fstype {
		case "cgroup2":
			cm := &cgroupMount{point: m.point, root: m.root}
			if m.point == "/sys/fs/cgroup" {
				l.unified = cm
			} else if m.point == "/sys/fs/cgroup/unified" {
				hybridUnified = cm
			}
		case "cgroup":
			l.v1 = append(l.v1, cgroupMount{point: m.point, root: m.root, controllers: v1MountControllers(m.superOpts)})
		}
	}
	switch {
	case l.unified != nil:
		l.version = 2
	case len(l.v1) > 0:
		l.version = 1
		if hybridUnified != nil {
			l.hybrid = true
			l.unified = hybridUnified
			ctl, _ := h.readTrim(path.Join(hybridUnified.point, "cgroup.controllers"))
			l.unifiedControllers = strings.Fields(ctl)
		}
	}
	own, err := os.ReadFile(h.path("/proc/self/cgroup"))
	if err != nil {
		l.problem = err.Error()
		return l
	}
	parseProcCgroup(string(own), l.own)
	return l
}

type mountinfoLine struct {
	root, point, fstype string
	superOpts           []string
}

// readMountinfo parses the fields crib needs from a mountinfo file
// (proc(5)): root (4th), mount point (5th), and after the "-" separator the
// filesystem type and the super-block options.
func readMountinfo(file string) ([]mountinfoLine, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	var out []mountinfoLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 6 || len(fields) < sep+4 {
			continue
		}
		out = append(out, mountinfoLine{
			root:      unescapeOctal(fields[3]),
			point:     unescapeOctal(fields[4]),
			fstype:    fields[sep+1],
			superOpts: strings.Split(fields[sep+3], ","),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	return out, nil
}

// unescapeOctal undoes the \NNN escapes mountinfo uses for space, tab,
// newline and backslash in paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// v1MountControllers picks the controller names out of a v1 cgroup mount's
// options, dropping generic options and named hierarchies (name=systemd).
func v1MountControllers(opts []string) []string {
	var out []string
	for _, o := range opts {
		switch {
		case o == "rw" || o == "ro" || strings.Contains(o, "="):
		case o == "clone_children" || o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" || o == "favordynmods":
		default:
			out = append(out, o)
		}
	}
	return out
}

// parseProcCgroup fills own from /proc/self/cgroup lines
// "ID:CONTROLLERS:PATH".
func parseProcCgroup(text string, own map[string]string) {
	for line := range strings.Lines(text) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			own[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if !strings.Contains(c, "=") {
				own[c] = parts[2]
			}
		}
	}
}

// dir is the host directory of cgroup rel in mount m. A mount of a
// sub-cgroup (inside a cgroup namespace, say) shows paths from its root.
func (m cgroupMount) dir(rel string) string {
	if m.root != "/" && (rel == m.root || strings.HasPrefix(rel, m.root+"/")) {
		rel = strings.TrimPrefix(rel, m.root)
	}
	return path.Join(m.point, rel)
}

// target is the cgroup crib puts pods under for a controller ("" for v2):
// the configured parent, else the one crib runs in.
func (r *run) cgroupTarget(controller string) (string, bool) {
	if r.cfg.Cgroup.Parent != "" {
		return path.Join("/", r.cfg.Cgroup.Parent), true
	}
	own, ok := r.layout.own[controller]
	return own, ok
}

// cgroupWritable reports whether the user can make child cgroups in dir
// and move processes into it.
func (r *run) cgroupWritable(dir string) bool {
	okDir, err := r.h.may(dir, mayWrite|mayExec)
	if err != nil || !okDir {
		return false
	}
	okProcs, err := r.h.may(path.Join(dir, "cgroup.procs"), mayWrite)
	return err == nil && okProcs
}

// checkCgroup predicts from the host what crib can use, and defers to
// what a running crib recorded it uses (cgroups.json), so that `crib
// doctor`, `crictl info` and the daemon say the same.
func (r *run) checkCgroup() Check {
	c := r.predictCgroup()
	if use, ok := r.daemonCgroupUse(); ok {
		// The summary line follows the daemon too.
		r.f.CgroupWritable = map[string]bool{}
		for _, name := range use.Controllers {
			r.f.CgroupWritable[name] = use.Confined
		}
		return use.apply(c)
	}
	return c
}

func (r *run) predictCgroup() Check {
	c := Check{ID: IDCgroup, Title: "cgroups"}
	l := r.layout
	r.f.CgroupVersion, r.f.CgroupHybrid = l.version, l.hybrid
	switch {
	case r.cfg.Cgroup.Manager == "none":
		c.Detail = "disabled by configuration (cgroup manager none): pods run unconfined, without cpu, memory or pids limits"
		return c
	case l.version == 0:
		c.Status = Warn
		c.Detail = "no cgroup filesystem mounted at /sys/fs/cgroup: pods run unconfined, without cpu, memory or pids limits"
		if l.problem != "" {
			c.Detail += " (" + l.problem + ")"
		}
		c.Fix = r.fix.sudo("mount -t cgroup2 none /sys/fs/cgroup")
		return c
	case l.version == 2:
		return r.checkCgroupV2(c)
	}
	return r.checkCgroupV1(c)
}

func (r *run) checkCgroupV2(c Check) Check {
	rel, ok := r.cgroupTarget("")
	if !ok {
		c.Status = Warn
		c.Detail = "cgroup v2, but /proc/self/cgroup does not say where crib runs: pods run unconfined"
		return c
	}
	r.f.CgroupPath = rel
	dir := r.layout.unified.dir(rel)
	ctl, _ := r.h.readTrim(path.Join(dir, "cgroup.controllers"))
	controllers := strings.Fields(ctl)
	delegated := r.cgroupWritable(dir)
	if delegated {
		ok, err := r.h.may(path.Join(dir, "cgroup.subtree_control"), mayWrite)
		delegated = err == nil && ok
	}
	for _, name := range controllers {
		r.f.CgroupWritable[name] = delegated
	}
	missing := missingFrom(neededControllers(2), controllers)
	switch {
	case !delegated:
		c.Status = Warn
		c.Detail = fmt.Sprintf("cgroup v2: %s (crib's cgroup) is not delegated to %s: pods run unconfined, without cpu, memory or pids limits", rel, r.h.User)
		c.Detail, c.Fix = r.v2DelegationFix(c.Detail)
	case len(missing) > 0:
		c.Status = Warn
		c.Detail = fmt.Sprintf("cgroup v2: %s is delegated to %s but lacks the %s controller(s): those limits are not enforced", rel, r.h.User, strings.Join(missing, ", "))
		c.Fix = r.v2ControllersFix(dir, missing)
	default:
		c.Detail = fmt.Sprintf("cgroup v2: %s is delegated to %s with controllers %s", rel, r.h.User, strings.Join(controllers, " "))
		if r.cfg.Cgroup.Parent == "" {
			c.Detail += "; crib moves its own processes to crib/ in it and makes pod cgroups under pods/"
		}
	}
	return c
}

func (r *run) systemd() bool { return r.h.exists("/run/systemd/system") }

// systemdDelegateFix asks systemd to delegate the controllers to every
// user manager; it takes effect at the next login.
func (r *run) systemdDelegateFix() string {
	return and(
		r.fix.sudo("mkdir -p /etc/systemd/system/user@.service.d"),
		`printf '[Service]\nDelegate=cpu cpuset io memory pids\n' | `+r.fix.sudo("tee /etc/systemd/system/user@.service.d/delegate.conf"),
		r.fix.sudo("systemctl daemon-reload"),
	)
}

// v2DelegationFix returns the detail and the fix for a cgroup that is not
// the user's: with systemd, run crib inside the user manager's delegated
// subtree (delegating it first if needed); without, have root make one.
func (r *run) v2DelegationFix(detail string) (string, string) {
	if r.cfg.Cgroup.Parent != "" {
		dir := r.layout.unified.dir(path.Join("/", r.cfg.Cgroup.Parent))
		return detail + "; then start crib from the shell moved into it", r.v2ManualFix(dir)
	}
	if r.systemd() {
		uid := strconv.Itoa(r.h.UID)
		userSvc := r.layout.unified.dir("/user.slice/user-" + uid + ".slice/user@" + uid + ".service")
		if r.cgroupWritable(userSvc) {
			return detail + "; systemd delegated " + userSvc + " to you: start crib inside it",
				"systemd-run --user --scope -p Delegate=yes crib serve"
		}
		return detail + "; after the fix log out and in again, then start crib as a systemd user service",
			r.systemdDelegateFix()
	}
	dir := r.layout.unified.dir("/crib-" + r.h.User)
	return detail + "; then start crib from the shell moved into " + dir, r.v2ManualFix(dir)
}

// v2ManualFix has root make dir, enable the controllers above it, give it
// to the user and move the current shell in (cgroup v2 only lets a process
// move cgroups within a subtree it owns, so crib itself must start inside).
func (r *run) v2ManualFix(dir string) string {
	return and(
		r.fix.sudo("mkdir -p "+dir),
		"echo '+cpu +memory +pids' | "+r.fix.sudo("tee "+path.Join(path.Dir(dir), "cgroup.subtree_control")),
		r.fix.sudo("chown -R "+r.h.User+" "+dir),
		"echo $$ | "+r.fix.sudo("tee "+path.Join(dir, "cgroup.procs")),
	)
}

func (r *run) v2ControllersFix(dir string, missing []string) string {
	if r.systemd() && r.cfg.Cgroup.Parent == "" {
		return r.systemdDelegateFix()
	}
	plus := make([]string, len(missing))
	for i, m := range missing {
		plus[i] = "+" + m
	}
	return "echo '" + strings.Join(plus, " ") + "' | " + r.fix.sudo("tee "+path.Join(path.Dir(dir), "cgroup.subtree_control"))
}

func (r *run) checkCgroupV1(c Check) Check {
	mode := "cgroup v1"
	if r.layout.hybrid {
		mode = "cgroup v1 (hybrid: cgroup2 at " + r.layout.unified.point + ")"
	}
	var writable, denied []string
	var fixDirs []string
	needed := neededControllers(1)
	for _, name := range v1Controllers() {
		m, ok := r.v1Mount(name)
		if !ok {
			continue
		}
		rel, ok := r.cgroupTarget(name)
		if !ok {
			continue
		}
		rel, dir := r.v1Dir(m, name, rel)
		if name == "memory" || r.f.CgroupPath == "" {
			r.f.CgroupPath = rel
		}
		w := r.cgroupWritable(dir)
		r.f.CgroupWritable[name] = w
		if w {
			writable = append(writable, name)
			continue
		}
		denied = append(denied, name)
		if slices.Contains(needed, name) && !slices.Contains(fixDirs, r.v1FixDir(dir)) {
			fixDirs = append(fixDirs, r.v1FixDir(dir))
		}
	}
	missing := missingFrom(needed, writable)
	if len(missing) == 0 {
		c.Detail = fmt.Sprintf("%s: writable by %s: %s", mode, r.h.User, strings.Join(writable, " "))
		return c
	}
	c.Status = Warn
	if len(writable) == 0 {
		c.Detail = fmt.Sprintf("%s: no controller's cgroup is writable by %s: pods run unconfined, without cpu, memory or pids limits", mode, r.h.User)
	} else {
		c.Detail = fmt.Sprintf("%s: not writable by %s: %s; limits and stats of %s are not enforced or reported",
			mode, r.h.User, strings.Join(denied, " "), strings.Join(missing, ", "))
	}
	if len(fixDirs) > 0 {
		c.Fix = r.v1Fix(fixDirs)
		if r.cfg.Cgroup.Parent == "" {
			c.Detail += "; the fix moves the current shell in: start crib from it"
		}
	}
	return c
}

// v1Dir finds a configured parent where the daemon does (cgroups.Detect):
// from the hierarchy's root, else below crib's own cgroup of that
// hierarchy, where scripts/cgroup-delegate.sh makes the memory subtree.
func (r *run) v1Dir(m cgroupMount, controller, rel string) (string, string) {
	dir := m.dir(rel)
	if r.cfg.Cgroup.Parent == "" || r.h.exists(dir) {
		return rel, dir
	}
	if own, ok := r.layout.own[controller]; ok {
		below := path.Join(own, r.cfg.Cgroup.Parent)
		if d := m.dir(below); r.h.exists(d) {
			return below, d
		}
	}
	return rel, dir
}

func (r *run) v1Mount(controller string) (cgroupMount, bool) {
	for _, m := range r.layout.v1 {
		if slices.Contains(m.controllers, controller) {
			return m, true
		}
	}
	return cgroupMount{}, false
}

// v1FixDir is the directory root should hand to the user: the configured
// parent itself, or a child of crib's own cgroup (never crib's own cgroup,
// which other processes of the machine may share).
func (r *run) v1FixDir(dir string) string {
	if r.cfg.Cgroup.Parent != "" {
		return dir
	}
	return path.Join(dir, "crib-"+r.h.User)
}

// v1Fix makes the directories, gives them to the user and, without a
// configured parent, moves the current shell into them so crib started
// from it runs there (v1 lets a user move its own processes into a cgroup
// whose cgroup.procs it may write).
func (r *run) v1Fix(dirs []string) string {
	all := strings.Join(dirs, " ")
	fix := and(r.fix.sudo("mkdir -p "+all), r.fix.sudo("chown -R "+r.h.User+" "+all))
	if r.cfg.Cgroup.Parent == "" {
		fix += " && for d in " + all + "; do echo $$ > $d/cgroup.procs; done"
	}
	return fix
}

func missingFrom(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}
