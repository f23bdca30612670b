// Package logsetup builds crib's logger from the configuration, the same
// way in every crib program (`crib`, and the host-side parent
// cmd/crib-hostside, which logs on crib's behalf after crib executed it).
package logsetup

import (
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/crib-dev/crib/internal/config"
)

// New logs as the configuration says. Under systemd, with standard error
// connected to the journal, the time is left out: the journal stamps
// every line itself.
func New(cfg config.Config, w io.Writer, journal bool) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	if journal {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// StderrIsJournal reports whether standard error is systemd's journal
// (JOURNAL_STREAM names its device and inode).
func StderrIsJournal() bool {
	return isJournalStream(os.Getenv("JOURNAL_STREAM"), os.Stderr)
}

func isJournalStream(v string, f *os.File) bool {
	devStr, inoStr, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devStr, 10, 64)
	ino, err2 := strconv.ParseUint(inoStr, 10, 64)
	fi, err3 := f.Stat()
	if err1 != nil || err2 != nil || err3 != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && st.Ino == ino
}
