package runtime

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResolveUser(t *testing.T) {
	acct, err := loadAccounts(testdataDir(t) + "/rootfs/basic")
	if err != nil {
		t.Fatal(err)
	}
	uid := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	tests := []struct {
		name      string
		sc        *runtimeapi.LinuxContainerSecurityContext
		imageUser string
		uid, gid  uint32
		groups    []uint32
	}{
		{"no user is root, with root's groups", nil, "", 0, 0, []uint32{0, 2, 10}},
		{"image uid with an entry", nil, "1000", 1000, 1000, []uint32{1000, 50000}},
		{"image uid without an entry", nil, "4000", 4000, 0, []uint32{0}},
		{"image name", nil, "www-data", 33, 33, []uint32{33, 1004}},
		{"image uid:gid", nil, "1003:1004", 1003, 1004, []uint32{1004}},
		{"image name:gid", nil, "www-data:1004", 33, 1004, []uint32{1004}},
		{"image uid:group", nil, "1000:wheel", 1000, 10, []uint32{10, 50000}},
		{"image :group is root in that group", nil, ":www-data", 0, 33, []uint32{2, 10, 33}},
		{"run_as_user beats the image user", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(33)}, "1000:1000", 33, 33, []uint32{33, 1004}},
		{"run_as_user with run_as_group", &runtimeapi.LinuxContainerSecurityContext{RunAsUser: uid(1001), RunAsGroup: uid(1002)}, "", 1001, 1002, []uint32{1002}},
		{"run_as_username", &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "default-user"}, "", 1000, 1000, []uint32{1000, 50000}},
		{"supplemental groups merged and sorted", &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: uid(1000), SupplementalGroups: []int64{60000, 1234, 50000},
		}, "", 1000, 1000, []uint32{1000, 1234, 50000, 60000}},
		{"strict keeps only the given groups", &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: uid(1000), SupplementalGroups: []int64{1234},
			SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
		}, "", 1000, 1000, []uint32{1000, 1234}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := resolveUser(tt.sc, tt.imageUser, acct)
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tt.uid || u.GID != tt.gid || !slices.Equal(u.AdditionalGids, tt.groups) {
				t.Errorf("got %d:%d %v, want %d:%d %v", u.UID, u.GID, u.AdditionalGids, tt.uid, tt.gid, tt.groups)
			}
		})
	}
}

// TestLoadAccountsMissingFiles: a scratch image has no account files, which
// is not an error; numeric users still work.
func TestLoadAccountsMissingFiles(t *testing.T) {
	acct, err := loadAccounts(testdataDir(t) + "/rootfs/empty")
	if err != nil {
		t.Fatal(err)
	}
	u, err := resolveUser(nil, "65532:65532", acct)
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 65532 || u.GID != 65532 || !slices.Equal(u.AdditionalGids, []uint32{65532}) {
		t.Errorf("got %+v", u)
	}
}

func TestParseID(t *testing.T) {
	for s, want := range map[string]bool{"0": true, "4294967294": true, "4294967295": false, "-1": false, "1e3": false, "www": false, "": false} {
		if _, ok := parseID(s); ok != want {
			t.Errorf("parseID(%q) numeric = %v, want %v", s, ok, want)
		}
	}
}
