package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/idmap"
)

// Check IDs, stable for scripts reading `crib doctor --json`.
const (
	IDSubuid         = "subuid"
	IDSubgid         = "subgid"
	IDNewuidmap      = "newuidmap"
	IDNewgidmap      = "newgidmap"
	IDUserNS         = "userns"
	IDAppArmorUserNS = "apparmor-userns"
	IDRunc           = "runc"
	IDCrun           = "crun"
	IDOCIRuntime     = "oci-runtime"
	IDConmon         = "conmon"
	IDOverlay        = "overlay"
	IDFuseOverlayfs  = "fuse-overlayfs"
	IDCgroup         = "cgroup"
	IDOutbound       = "outbound"
	IDCNIPlugins     = "cni-plugins"
	IDSELinux        = "selinux"
	IDXDGRuntimeDir  = "xdg-runtime-dir"
	IDLinger         = "linger"
	IDRecovery       = "recovery"
	IDHostSide       = "host-side"
)

// CheckIDs lists every check Run reports, in report order.
func CheckIDs() []string {
	return []string{
		IDSubuid, IDSubgid, IDNewuidmap, IDNewgidmap, IDUserNS, IDAppArmorUserNS,
		IDRunc, IDCrun, IDOCIRuntime, IDConmon,
		IDOverlay, IDFuseOverlayfs, IDCgroup,
		IDOutbound, IDCNIPlugins,
		IDSELinux, IDXDGRuntimeDir, IDLinger,
		IDRecovery, IDHostSide,
	}
}

// Status is the outcome of one check.
type Status int

const (
	OK Status = iota
	Warn
	Fail
)

// String is the word printed in the text report.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "FAIL"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText gives JSON the lower-case word.
func (s Status) MarshalText() ([]byte, error) { return []byte(strings.ToLower(s.String())), nil }

// UnmarshalText reads what MarshalText wrote, so a saved report (the
// rootless parent hands its report to the child) round-trips.
func (s *Status) UnmarshalText(b []byte) error {
	for _, c := range []Status{OK, Warn, Fail} {
		if strings.EqualFold(c.String(), string(b)) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("unknown check status %q", b)
}

// Check is the outcome of one prerequisite.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status Status `json:"status"`
	// Hard checks stop `crib serve` when they fail.
	Hard bool `json:"hard"`
	// Detail says what was found, or what is wrong.
	Detail string `json:"detail"`
	// Fix is the exact command that fixes a Warn or Fail ("" when none
	// exists, e.g. a kernel that lacks a feature).
	Fix string `json:"fix,omitempty"`
}

// Features is what the host offers, for the packages that adapt to it.
type Features struct {
	// CgroupVersion is 1 (including hybrid), 2, or 0 when no cgroup
	// filesystem was found.
	CgroupVersion int  `json:"cgroupVersion"`
	CgroupHybrid  bool `json:"cgroupHybrid"`
	// CgroupPath is the cgroup checked: the configured parent, else the
	// cgroup crib runs in (the v2 one, or for v1 the memory one).
	CgroupPath string `json:"cgroupPath"`
	// CgroupWritable maps each controller found to whether crib may make
	// child cgroups and set limits with it (v2: delegated to the user;
	// v1: the per-controller cgroup is writable).
	CgroupWritable map[string]bool `json:"cgroupWritable"`

	OverlayInUserNS bool `json:"overlayInUserNS"`
	FuseOverlayfs   bool `json:"fuseOverlayfs"`
	// StorageDriver is the configured driver, or what auto picks here:
	// overlay, fuse-overlayfs or vfs.
	StorageDriver string `json:"storageDriver"`

	// OCIRuntimes maps usable runtime names to their paths.
	OCIRuntimes map[string]string `json:"ociRuntimes"`
	// OCIRuntimeRefused maps installed but unusable runtimes to why.
	OCIRuntimeRefused map[string]string `json:"ociRuntimeRefused"`
	// OCIRuntimeVersions maps usable runtimes to their --version line.
	OCIRuntimeVersions map[string]string `json:"ociRuntimeVersions,omitempty"`
	// DefaultRuntime is the handler used when a request names none.
	DefaultRuntime string `json:"defaultRuntime"`
	// DefaultRuntimeReason says why DefaultRuntime: configured, or what
	// "auto" found about crun.
	DefaultRuntimeReason string `json:"defaultRuntimeReason,omitempty"`
	Conmon               string `json:"conmon"`

	// Outbound lists the usable outbound helpers, in preference order.
	Outbound []string `json:"outbound"`
	// CNIPluginDir is the first configured directory holding every
	// plugin crib uses ("" when none holds them all).
	CNIPluginDir string `json:"cniPluginDir"`
	SELinux      bool   `json:"selinux"`

	Subuid []idmap.Range `json:"subuid"`
	Subgid []idmap.Range `json:"subgid"`

	// Programs maps every helper program found to its path (runc sits in
	// /usr/sbin, off an unprivileged user's PATH on Debian).
	Programs map[string]string `json:"programs"`
}

// Report is the outcome of every check on one host.
type Report struct {
	Rootful  bool     `json:"rootful"`
	Checks   []Check  `json:"checks"`
	Features Features `json:"features"`
}

// Check returns the check with the given ID.
func (r Report) Check(id string) (Check, bool) {
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.ID == id })
	if i < 0 {
		return Check{}, false
	}
	return r.Checks[i], true
}

// HardFailures are the failed hard requirements: `crib serve` must not
// start while there are any.
func (r Report) HardFailures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Hard && c.Status == Fail {
			out = append(out, c)
		}
	}
	return out
}

// PrerequisiteError is the error `crib serve` stops with: the failed hard
// checks, worded as `crib doctor` words them.
type PrerequisiteError struct{ Checks []Check }

func (e *PrerequisiteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d host prerequisite(s) missing (`crib doctor` shows every check):", len(e.Checks))
	for _, c := range e.Checks {
		b.WriteString("\n")
		writeCheck(&b, c)
	}
	return strings.TrimRight(b.String(), "\n")
}

// Unwrap lets callers treat a missing prerequisite as a failed precondition.
func (e *PrerequisiteError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Err is a *PrerequisiteError when a hard requirement failed, else nil.
func (r Report) Err() error {
	if hf := r.HardFailures(); len(hf) > 0 {
		return &PrerequisiteError{Checks: hf}
	}
	return nil
}

// WriteText writes the report for people: one line per check, and under
// each unmet one the command that fixes it, then a summary.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, c := range r.Checks {
		writeCheck(&b, c)
	}
	b.WriteString("\n")
	writeSummary(&b, r)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCheck(b *strings.Builder, c Check) {
	fmt.Fprintf(b, "%-4s  %s: %s\n", c.Status, c.Title, c.Detail)
	if c.Status != OK && c.Fix != "" {
		fmt.Fprintf(b, "      fix: %s\n", c.Fix)
	}
}

func writeSummary(b *strings.Builder, r Report) {
	f := r.Features
	mode := "rootless"
	if r.Rootful {
		mode = "rootful"
	}
	fmt.Fprintf(b, "mode: %s\n", mode)
	fmt.Fprintf(b, "storage driver: %s\n", f.StorageDriver)
	runtimes := slices.Sorted(maps.Keys(f.OCIRuntimes))
	fmt.Fprintf(b, "OCI runtimes: %s (default: %s)\n", listOrNone(runtimes), orNone(f.DefaultRuntime))
	fmt.Fprintf(b, "cgroups: %s\n", cgroupSummary(f))
	if !r.Rootful {
		fmt.Fprintf(b, "outbound: %s\n", listOrNone(f.Outbound))
	}
	hf := r.HardFailures()
	if len(hf) == 0 {
		b.WriteString("all hard requirements are met\n")
		return
	}
	ids := make([]string, len(hf))
	for i, c := range hf {
		ids[i] = c.ID
	}
	fmt.Fprintf(b, "%d hard requirement(s) missing (%s): crib serve will not start\n", len(hf), strings.Join(ids, ", "))
}

func cgroupSummary(f Features) string {
	var v string
	switch {
	case f.CgroupVersion == 0:
		return "none found: pods run unconfined"
	case f.CgroupHybrid:
		v = "v1 (hybrid)"
	default:
		v = fmt.Sprintf("v%d", f.CgroupVersion)
	}
	var usable []string
	for _, c := range slices.Sorted(maps.Keys(f.CgroupWritable)) {
		if f.CgroupWritable[c] {
			usable = append(usable, c)
		}
	}
	if len(usable) == 0 {
		return v + ", no controller usable: pods run unconfined"
	}
	return v + ", usable controllers: " + strings.Join(usable, " ")
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// WriteJSON writes the report for scripts; "ok" is false exactly when
// `crib serve` would refuse to start.
func (r Report) WriteJSON(w io.Writer) error {
	out := struct {
		OK bool `json:"ok"`
		Report
	}{OK: len(r.HardFailures()) == 0, Report: r}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing doctor report as JSON: %w", err)
	}
	return nil
}
