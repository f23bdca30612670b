package mountinfo

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"plain", "22 1 0:21 / /proc rw - proc proc rw\n", []string{"/proc"}},
		{"space escaped", `30 1 0:5 / /mnt/a\040b rw - tmpfs t rw` + "\n", []string{"/mnt/a b"}},
		{"backslash escaped", `30 1 0:5 / /x\134y rw - tmpfs t rw`, []string{`/x\y`}},
		{"escape at the very end", `30 1 0:5 / /z\040 rw - tmpfs t rw`, []string{"/z "}},
		{"a lone backslash stays", `30 1 0:5 / /q\4 rw - tmpfs t rw`, []string{`/q\4`}},
		{"stacked mounts listed twice", "1 0 0:1 / /m rw - tmpfs a rw\n2 1 0:2 / /m rw - tmpfs b rw\n", []string{"/m", "/m"}},
		{"short and empty lines skipped", "\n1 2 3\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parse(tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("parse = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPointsListsRoot(t *testing.T) {
	points, err := Points()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(points, "/") {
		t.Fatalf("/ is not among this process's mount points: %q", points)
	}
}

func TestParseMounts(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Mount
	}{
		{"no optional fields", "22 1 0:21 / /proc rw - proc crib-node-proc rw\n", []Mount{{"/proc", "proc", "crib-node-proc"}}},
		{"optional fields before the separator", "30 1 0:5 / /dev/shm rw shared:4 master:1 - tmpfs shm rw\n", []Mount{{"/dev/shm", "tmpfs", "shm"}}},
		{"escaped source", `30 1 0:5 / /m rw - tmpfs a\040b rw`, []Mount{{"/m", "tmpfs", "a b"}}},
		{"no separator keeps the point", "30 1 0:5 / /m rw\n", []Mount{{Point: "/m"}}},
		{"stacked mounts listed twice", "1 0 0:1 / /m rw - tmpfs a rw\n2 1 0:2 / /m rw - mqueue b rw\n", []Mount{{"/m", "tmpfs", "a"}, {"/m", "mqueue", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseMounts(tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("parseMounts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseEntries(t *testing.T) {
	in := "35 31 0:32 /process_api/x /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
		"40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n" +
		"41 31 0:38 / /sys/fs/cgroup/a\\040b rw shared:3 - cgroup2 cgroup2 rw\n"
	got := parseEntries(in)
	want := []Entry{
		{Mount: Mount{"/sys/fs/cgroup/memory", "cgroup", "cgroup"}, Root: "/process_api/x", SuperOptions: []string{"rw", "memory"}},
		{Mount: Mount{"/sys/fs/cgroup/systemd", "cgroup", "cgroup"}, Root: "/", SuperOptions: []string{"rw", "name=systemd"}},
		{Mount: Mount{"/sys/fs/cgroup/a b", "cgroup2", "cgroup2"}, Root: "/", SuperOptions: []string{"rw"}},
	}
	if len(got) != len(want) {
		t.Fatalf("parseEntries = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Mount != want[i].Mount || got[i].Root != want[i].Root || !slices.Equal(got[i].SuperOptions, want[i].SuperOptions) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
