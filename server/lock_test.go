package server

import (
	"errors"
	"strings"
	"testing"
)

func TestInstanceLockRefusesSecond(t *testing.T) {
	root, runroot := t.TempDir(), t.TempDir()
	first, err := acquireInstanceLock(root, runroot)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open file descriptions, so a second open in the
	// same process conflicts just as another process would.
	_, err = acquireInstanceLock(t.TempDir(), runroot)
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), runroot) {
		t.Fatalf("second lock: %v", err)
	}
	first.release()
	again, err := acquireInstanceLock(root, runroot)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.release()
}

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
