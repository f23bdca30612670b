package logsetup

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/crib-dev/crib/internal/config"
)

func TestIsJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"", false},
		{"garbage", false},
	} {
		if got := isJournalStream(tc.v, f); got != tc.want {
			t.Errorf("isJournalStream(%q) = %v", tc.v, got)
		}
	}
}

func TestJournalLoggerDropsTime(t *testing.T) {
	cfg := config.Default(config.Env{Home: "/home/ann", UID: 1000})
	var plain, journal bytes.Buffer
	New(cfg, &plain, false).Info("hello")
	New(cfg, &journal, true).Info("hello")
	if !strings.HasPrefix(plain.String(), "time=") {
		t.Errorf("plain log lacks the time: %q", plain.String())
	}
	if journal.String() != "level=INFO msg=hello\n" {
		t.Errorf("journal log %q", journal.String())
	}
}
