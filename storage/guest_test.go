package storage

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestLeavesTheDaemonsWorkAlone opens a guest store (what `crib
// image` does) beside a store in use: the host's layer a pull has written
// but no image references yet, and the host's spooled download, must both
// survive the guest's Open, its failed import and its Close.
func TestGuestLeavesTheDaemonsWorkAlone(t *testing.T) {
	var hostOpts Options
	host := newStore(t, func(o *Options) { hostOpts = *o })
	inFlight, err := host.store.CreateLayer("", "", nil, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	spooled := filepath.Join(host.tmpDir, "download-in-progress")
	if err := os.WriteFile(spooled, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	guestOpts := hostOpts
	guestOpts.Guest = true
	guestOpts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	guest, err := Open(guestOpts)
	if err != nil {
		t.Fatalf("Open as a guest: %v", err)
	}
	if guest.tmpDir == host.tmpDir || !strings.HasPrefix(guest.tmpDir, host.tmpDir+"/") {
		t.Errorf("guest spools in %s, want a directory of its own inside %s", guest.tmpDir, host.tmpDir)
	}
	if _, err := guest.Import(t.Context(), strings.NewReader("not an archive"), "junk"); err == nil {
		t.Fatal("importing junk succeeded")
	}
	guestTmp := guest.tmpDir
	if err := guest.Close(); err != nil {
		t.Fatalf("guest Close: %v", err)
	}

	if _, err := host.store.Layer(inFlight.ID); err != nil {
		t.Errorf("the guest removed the host's unreferenced layer: %v", err)
	}
	if _, err := os.Stat(spooled); err != nil {
		t.Errorf("the guest removed the host's spooled file: %v", err)
	}
	if _, err := os.Stat(guestTmp); !os.IsNotExist(err) {
		t.Errorf("the guest's spool directory outlived Close: %v", err)
	}
}
