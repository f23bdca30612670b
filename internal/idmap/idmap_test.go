package idmap

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		user    string
		uid     int
		want    []Range
		wantErr error // nil: success
	}{
		{
			name: "useradd default",
			file: "alice:100000:65536\n",
			user: "alice", uid: 1000,
			want: []Range{{100000, 65536}},
		},
		{
			name: "by uid",
			file: "1000:200000:65536\n",
			user: "alice", uid: 1000,
			want: []Range{{200000, 65536}},
		},
		{
			name: "several ranges, comments, blanks and other users",
			file: "# subordinate ids\n\nbob:100000:65536\nalice:300000:1000\n  \nalice:165536:65536\n#alice:1:1\n",
			user: "alice", uid: 1000,
			want: []Range{{165536, 65536}, {300000, 1000}},
		},
		{
			name: "listed by name and uid with the same range",
			file: "alice:100000:65536\n1000:100000:65536\n",
			user: "alice", uid: 1000,
			want: []Range{{100000, 65536}},
		},
		{
			name: "overlapping entries are trimmed, not merged",
			file: "alice:100000:1000\nalice:100500:1000\nalice:100600:10\n",
			user: "alice", uid: 1000,
			want: []Range{{100000, 1000}, {101000, 500}},
		},
		{
			name: "name that is a prefix of another is not a match",
			file: "alice2:100000:65536\n",
			user: "alice", uid: 1000,
			wantErr: errdefs.ErrNotFound,
		},
		{
			name:    "no entry",
			file:    "bob:100000:65536\n",
			user:    "alice",
			uid:     1000,
			wantErr: errdefs.ErrNotFound,
		},
		{
			name:    "empty file",
			file:    "",
			user:    "alice",
			uid:     1000,
			wantErr: errdefs.ErrNotFound,
		},
		{
			name: "malformed line of another user is ignored",
			file: "bob:x:65536\nalice:100000:65536\n",
			user: "alice", uid: 1000,
			want: []Range{{100000, 65536}},
		},
		{
			name:    "malformed line of the user is an error",
			file:    "alice:100000\n",
			user:    "alice",
			uid:     1000,
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "zero count is an error",
			file:    "alice:100000:0\n",
			user:    "alice",
			uid:     1000,
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "range past the 32-bit id space is an error",
			file:    "alice:4294967000:1000\n",
			user:    "alice",
			uid:     1000,
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "empty user name matches by uid only",
			file: ":100000:65536\n1000:100000:10\n",
			user: "", uid: 1000,
			want: []Range{{100000, 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Lookup(strings.NewReader(tt.file), tt.user, tt.uid)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Lookup error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lookup: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Lookup = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	file := "# c\nalice:100000:65536\nbroken\nbob:165536:65536\n"
	got, err := Parse(strings.NewReader(file))
	want := []Entry{
		{Owner: "alice", Range: Range{100000, 65536}},
		{Owner: "bob", Range: Range{165536, 65536}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse entries = %v, want %v", got, want)
	}
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("Parse error = %v, want one naming line 3", err)
	}
}

func TestFirstFree(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		from    int
		count   int
		want    int
	}{
		{"empty file", nil, 100000, 65536, 100000},
		{"after the first user", []Entry{{"a", Range{100000, 65536}}}, 100000, 65536, 165536},
		{"gap large enough", []Entry{{"a", Range{100000, 65536}}, {"b", Range{400000, 65536}}}, 100000, 65536, 165536},
		{"gap too small", []Entry{{"a", Range{100000, 65536}}, {"b", Range{200000, 65536}}}, 100000, 65536, 265536},
		{"unsorted entries", []Entry{{"b", Range{165536, 65536}}, {"a", Range{100000, 65536}}}, 100000, 65536, 231072},
		{"entry below from", []Entry{{"a", Range{10000, 5000}}}, 100000, 65536, 100000},
		{"entry straddling from", []Entry{{"a", Range{90000, 20000}}}, 100000, 65536, 110000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FirstFree(tt.entries, tt.from, tt.count); got != tt.want {
				t.Errorf("FirstFree = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNewuidmapArgs(t *testing.T) {
	tests := []struct {
		name     string
		pid      int
		hostID   int
		ranges   []Range
		want     string
		wantSize int
	}{
		{
			name: "no subordinate ids", pid: 42, hostID: 1000,
			want: "42 0 1000 1", wantSize: 1,
		},
		{
			name: "one range", pid: 42, hostID: 1000,
			ranges: []Range{{100000, 65536}},
			want:   "42 0 1000 1 1 100000 65536", wantSize: 65537,
		},
		{
			name: "two ranges laid consecutively", pid: 7, hostID: 1000,
			ranges: []Range{{100000, 65536}, {300000, 1000}},
			want:   "7 0 1000 1 1 100000 65536 65537 300000 1000", wantSize: 66537,
		},
		{
			name: "host id inside a range is cut out", pid: 7, hostID: 100010,
			ranges: []Range{{100000, 100}},
			want:   "7 0 100010 1 1 100000 10 11 100011 89", wantSize: 100,
		},
		{
			name: "host id at the edge of a range", pid: 7, hostID: 100000,
			ranges: []Range{{100000, 10}},
			want:   "7 0 100000 1 1 100001 9", wantSize: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(NewuidmapArgs(tt.pid, tt.hostID, tt.ranges), " ")
			if got != tt.want {
				t.Errorf("NewuidmapArgs = %q, want %q", got, tt.want)
			}
			if size := Build(tt.hostID, tt.ranges).Size(); size != tt.wantSize {
				t.Errorf("Size = %d, want %d", size, tt.wantSize)
			}
		})
	}
}

func TestRangeString(t *testing.T) {
	if got := (Range{100000, 65536}).String(); got != "100000-165535" {
		t.Errorf("String = %q, want 100000-165535", got)
	}
	if got := Total([]Range{{1, 2}, {10, 5}}); got != 7 {
		t.Errorf("Total = %d, want 7", got)
	}
}

func TestPodCapacity(t *testing.T) {
	for _, tc := range []struct {
		name         string
		nsSize, want int
	}{
		{"the user alone", 1, 0},
		{"useradd's 65536 subordinate ids", 1 + 65536, 0},
		{"one pod's worth more", 1 + 2*65536, 1},
		{"just short of two", 3*65536 - 1, 1},
		{"host-setup.sh's range", 1 + 111*65536, 110},
	} {
		if got := PodCapacity(tc.nsSize); got != tc.want {
			t.Errorf("%s: PodCapacity(%d) = %d, want %d", tc.name, tc.nsSize, got, tc.want)
		}
	}
}

func TestParseProcMapCovers(t *testing.T) {
	// crib's uid_map with host-setup.sh's two ranges.
	m, err := ParseProcMap(strings.NewReader("         0       1001          1\n         1     362144      65536\n     65537     458752    7208960\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != 1+65536+7208960 {
		t.Fatalf("size %d", m.Size())
	}
	for _, tc := range []struct {
		name         string
		start, count int
		want         bool
	}{
		{"the kubelet's first pod", 65536, 65536, true},
		{"critest's mapping, across two lines", 1000, 100000, true},
		{"the last whole pod", 1 + 65536 + 7208960 - 65536, 65536, true},
		{"one id past the end", 1 + 65536 + 7208960 - 65536, 65537, false},
		{"wholly past the end", 1 << 30, 65536, false},
		{"empty", 1000, 0, false},
	} {
		if got := m.Covers(tc.start, tc.count); got != tc.want {
			t.Errorf("%s: Covers(%d, %d) = %v, want %v", tc.name, tc.start, tc.count, got, tc.want)
		}
	}
	if _, err := ParseProcMap(strings.NewReader("0 1000\n")); err == nil {
		t.Error("a line of two fields parsed")
	}
	if rootful, _ := ParseProcMap(strings.NewReader("0 0 4294967295\n")); !rootful.Covers(65536, 65536) {
		t.Error("the initial namespace's map does not cover a pod")
	}
}

func TestCarve(t *testing.T) {
	// crib's map after host-setup.sh appended a range to useradd's 65536.
	crib := Map{{0, 1001, 1}, {1, 362144, 65536}, {65537, 458752, 7208960}}
	got, ok := crib.Carve(0, 65536, 65536)
	want := Map{{0, 65536, 1}, {1, 65537, 65535}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("the kubelet's first pod across crib's seam: %v %v, want %v", got, ok, want)
	}
	if got, ok := crib.Carve(0, 131072, 65536); !ok || !reflect.DeepEqual(got, Map{{0, 131072, 65536}}) {
		t.Errorf("inside one line: %v %v", got, ok)
	}
	if _, ok := crib.Carve(0, 7274400, 65536); ok {
		t.Error("a range past crib's last id carved")
	}
	holey := Map{{0, 1001, 1}, {2, 100000, 10}}
	if _, ok := holey.Carve(0, 1, 5); ok {
		t.Error("a range over a hole in the map carved")
	}
}
