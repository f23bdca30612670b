package progress

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crib-dev/crib/internal/golden"
)

const (
	layerA = "sha256:aaaaaaaaaaaabbbbbbbbbbbbcccccccccccc"
	layerB = "sha256:1111111111112222222222223333333333"
	config = "sha256:ffffffffffff0000"
)

// pull is a pull of two layers and a config as the storage package reports
// it: layer B already stored, layer A read in three steps.
var pull = []Event{
	{ID: layerA, Kind: Started, Total: 4_000_000},
	{ID: layerB, Kind: Skipped, Total: 1200},
	{ID: layerA, Kind: Read, Offset: 1_000_000, Total: 4_000_000},
	{ID: layerA, Kind: Read, Offset: 3_000_000, Total: 4_000_000},
	{ID: config, Kind: Started, Total: -1},
	{ID: layerA, Kind: Done, Offset: 4_000_000, Total: 4_000_000},
	{ID: config, Kind: Done, Offset: 1500, Total: -1},
	{ID: layerA, Kind: Done, Offset: 4_000_000, Total: 4_000_000}, // repeated: no second line
}

func TestRendererGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		tty  bool
	}{{"plain", false}, {"terminal", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			r := New(&out, tc.tty, 72)
			for _, e := range pull {
				r.Update(e)
			}
			// Escape sequences made visible so that the golden file reads.
			got := strings.NewReplacer("\x1b", "<ESC>", "\r", "<CR>").Replace(out.String())
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), []byte(got))
		})
	}
}

func TestTerminalLinesFitWidth(t *testing.T) {
	for _, width := range []int{40, 72, 80, 200} {
		var out bytes.Buffer
		r := New(&out, true, width)
		for _, e := range pull {
			r.Update(e)
		}
		for _, line := range strings.Split(out.String(), "\n") {
			if i := strings.LastIndex(line, "\x1b[2K"); i >= 0 {
				line = line[i+len("\x1b[2K"):]
			}
			if len(line) > width {
				t.Errorf("width %d: line of %d columns: %q", width, len(line), line)
			}
		}
	}
}

func TestBar(t *testing.T) {
	tests := []struct {
		done  uint64
		total int64
		want  string
	}{
		{0, 100, "[>         ]"},
		{50, 100, "[=====>    ]"},
		{99, 100, "[=========>]"},
		{100, 100, "[==========]"},
		{150, 100, "[==========]"},
		{10, -1, "[          ]"},
		{0, 0, "[          ]"},
	}
	for _, tc := range tests {
		if got := bar(tc.done, tc.total, 10); got != tc.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0B"},
		{999, "999B"},
		{1000, "1kB"},
		{1234, "1.23kB"},
		{4_261_000, "4.26MB"},
		{999_600, "1MB"},
		{123_456_789_012, "123GB"},
	}
	for _, tc := range tests {
		if got := HumanSize(tc.n); got != tc.want {
			t.Errorf("HumanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestShortID(t *testing.T) {
	tests := map[string]string{
		"sha256:0123456789abcdef0123": "0123456789ab",
		"0123456789abcdef":            "0123456789ab",
		"sha256:abc":                  "abc",
	}
	for in, want := range tests {
		if got := ShortID(in); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}
