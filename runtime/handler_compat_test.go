package runtime

import "testing"

func TestSpecVersionFor(t *testing.T) {
	for _, tc := range []struct {
		name, version, want string
	}{
		{"runc", "runc version 1.1.5", ""},
		{"crun", "crun version 1.8.1", "1.0.2"},
		{"crun", "crun version 1.14.1", "1.0.2"},
		{"crun", "crun version 1.14.3", ""},
		{"crun", "crun version 1.23", ""},
		{"crun", "crun version 1.15-dev", ""},
		{"crun", "crun version 1.9.2+git", "1.0.2"},
		{"crun", "", "1.0.2"},
		{"crun", "crun version unknown", "1.0.2"},
	} {
		if got := SpecVersionFor(tc.name, tc.version); got != tc.want {
			t.Errorf("SpecVersionFor(%q, %q) = %q, want %q", tc.name, tc.version, got, tc.want)
		}
	}
}
