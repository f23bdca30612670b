package doctor

import (
	"github.com/crib-dev/crib/internal/config"
)

// notNeeded is the detail of a rootless-only check run as root.
const notNeeded = "not needed as root"

// run carries what several checks share while Run works through them.
type run struct {
	h      Host
	cfg    config.Config
	fix    fixer
	layout cgroupLayout
	f      Features
}

// Run checks every prerequisite on h for the configuration cfg.
// It never fails: a fact it cannot read becomes a check's detail.
func Run(h Host, cfg config.Config) Report {
	r := &run{
		h:      h,
		cfg:    cfg,
		fix:    fixer{rootful: h.rootful(), family: familyOf(h.osRelease())},
		layout: readCgroupLayout(h),
		f: Features{
			CgroupWritable:    map[string]bool{},
			OCIRuntimes:       map[string]string{},
			OCIRuntimeRefused: map[string]string{},
			Programs:          map[string]string{},
		},
	}
	checks := []Check{
		r.checkSubids(IDSubuid, "/etc/subuid"),
		r.checkSubids(IDSubgid, "/etc/subgid"),
		r.checkIDMapper(IDNewuidmap),
		r.checkIDMapper(IDNewgidmap),
		r.checkUserNS(),
		r.checkAppArmorUserNS(),
		r.checkRuntime(IDRunc, cfg.Runtime.RuncPath),
		r.checkRuntime(IDCrun, cfg.Runtime.CrunPath),
		r.checkDefaultRuntime(),
		r.checkConmon(),
		r.checkOverlay(),
		r.checkFuseOverlayfs(),
		r.checkCgroup(),
		r.checkOutbound(),
		r.checkCNIPlugins(),
		r.checkSELinux(),
		r.checkXDGRuntimeDir(),
		r.checkLinger(),
		r.checkRecovery(),
		r.checkHostSide(),
	}
	return Report{Rootful: h.rootful(), Checks: checks, Features: r.f}
}

// found records a located program in Features.Programs.
func (r *run) found(p program) {
	if p.Path != "" && p.Problem == "" {
		r.f.Programs[p.Name] = p.Path
	}
}
