package rootless

import "testing"

func TestResolvConfUsesLoopback(t *testing.T) {
	tests := []struct {
		conf string
		want bool
	}{
		{"nameserver 127.0.0.53\noptions edns0\n", true},
		{"# none\n", true},
		{"nameserver 127.0.0.1\nnameserver ::1\n", true},
		{"nameserver 10.0.0.2\n", false},
		{"nameserver 127.0.0.53\nnameserver 192.168.1.1\n", false},
	}
	for _, tc := range tests {
		if got := resolvConfUsesLoopback(tc.conf); got != tc.want {
			t.Errorf("%q: got %v", tc.conf, got)
		}
	}
}
