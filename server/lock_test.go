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
