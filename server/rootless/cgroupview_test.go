package rootless

import (
	"maps"
	"slices"
	"testing"

	"github.com/crib-dev/crib/internal/mountinfo"
)

func cgroupEntry(point, fstype, source, root string, opts ...string) mountinfo.Entry {
	return mountinfo.Entry{Mount: mountinfo.Mount{Point: point, FSType: fstype, Source: source}, Root: root, SuperOptions: opts}
}

// This project's machines: v1 hierarchies, crib's memory cgroup below the
// root, cgroup2 at /sys/fs/cgroup/unified.
var hybridMounts = []mountinfo.Entry{
	cgroupEntry("/", "overlay", "overlay", "/"),
	cgroupEntry("/sys/fs/cgroup", "tmpfs", "tmpfs", "/", "rw", "mode=755"),
	cgroupEntry("/sys/fs/cgroup/cpu", "cgroup", "cgroup", "/", "rw", "cpu"),
	cgroupEntry("/sys/fs/cgroup/memory", "cgroup", "cgroup", "/", "rw", "memory"),
	cgroupEntry("/sys/fs/cgroup/systemd", "cgroup", "cgroup", "/", "rw", "name=systemd"),
	cgroupEntry("/sys/fs/cgroup/unified", "cgroup2", "cgroup2", "/", "rw"),
}

const hybridProcCgroup = "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n"

func TestPlanCgroupView(t *testing.T) {
	pure := slices.Clone(hybridMounts[:len(hybridMounts)-1])
	tests := []struct {
		name       string
		mounts     []mountinfo.Entry
		procCgroup string
		links      map[string]string
		want       []cgroupViewMount
		wantLinks  map[string]string
		wantHidden []string
		wantOK     bool
	}{
		{name: "hybrid, memory below the root: rooted, unified left out", mounts: hybridMounts, procCgroup: hybridProcCgroup,
			links: map[string]string{"cpuacct": "cpu", "net_cls": "net_cls,net_prio"},
			want: []cgroupViewMount{{"cpu", "/sys/fs/cgroup/cpu"}, {"memory", "/sys/fs/cgroup/memory/process_api/x"},
				{"systemd", "/sys/fs/cgroup/systemd"}},
			wantLinks: map[string]string{"cpuacct": "cpu"}, wantHidden: []string{"/sys/fs/cgroup/unified"}, wantOK: true},
		{name: "hybrid, crib at every root: unified left out", mounts: hybridMounts, procCgroup: "4:memory:/\n0::/\n",
			want:       []cgroupViewMount{{"cpu", "/sys/fs/cgroup/cpu"}, {"memory", "/sys/fs/cgroup/memory"}, {"systemd", "/sys/fs/cgroup/systemd"}},
			wantHidden: []string{"/sys/fs/cgroup/unified"}, wantOK: true},
		{name: "pure v1, memory below the root: rooted", mounts: pure, procCgroup: hybridProcCgroup,
			want: []cgroupViewMount{{"cpu", "/sys/fs/cgroup/cpu"}, {"memory", "/sys/fs/cgroup/memory/process_api/x"},
				{"systemd", "/sys/fs/cgroup/systemd"}}, wantOK: true},
		{name: "pure v1, crib at every root: nothing to do", mounts: pure, procCgroup: "4:memory:/\n0::/\n"},
		{name: "pure v2: left alone", procCgroup: "0::/user.slice\n",
			mounts: []mountinfo.Entry{cgroupEntry("/sys/fs/cgroup", "cgroup2", "cgroup2", "/", "rw")}},
		{name: "the view made already (a restarted daemon)", procCgroup: hybridProcCgroup,
			mounts: append(slices.Clone(hybridMounts), cgroupEntry("/sys/fs/cgroup", "tmpfs", cgroupViewSource, "/", "rw"),
				cgroupEntry("/sys/fs/cgroup/memory", "cgroup", "cgroup", "/process_api/x", "rw", "memory"))},
		{name: "no cgroups mounted", mounts: hybridMounts[:1], procCgroup: hybridProcCgroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := planCgroupView(tt.mounts, tt.procCgroup, tt.links)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v (plan %+v)", ok, tt.wantOK, got)
			}
			if !ok {
				return
			}
			if !slices.Equal(got.hierarchies, tt.want) {
				t.Errorf("hierarchies = %v, want %v", got.hierarchies, tt.want)
			}
			if tt.wantLinks == nil {
				tt.wantLinks = map[string]string{}
			}
			if !maps.Equal(got.links, tt.wantLinks) {
				t.Errorf("links = %v, want %v", got.links, tt.wantLinks)
			}
			if !slices.Equal(got.hidden, tt.wantHidden) {
				t.Errorf("hidden = %v, want %v", got.hidden, tt.wantHidden)
			}
		})
	}
}
