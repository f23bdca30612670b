package errdefs

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // exact, when set
		maxLen  int
		hasSize bool
	}{
		{name: "short", in: "web", want: `"web"`},
		{name: "control bytes escaped", in: "a\x00b\n", want: `"a\x00b\n"`},
		{name: "exactly the limit", in: strings.Repeat("a", 256), want: `"` + strings.Repeat("a", 256) + `"`},
		{name: "1 MiB", in: strings.Repeat("x", 1<<20), maxLen: 300, hasSize: true},
		{name: "multi-byte rune at the cut", in: strings.Repeat("a", 255) + strings.Repeat("é", 1000), maxLen: 300, hasSize: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Quote(tc.in)
			if tc.want != "" && got != tc.want {
				t.Fatalf("Quote = %s, want %s", got, tc.want)
			}
			if tc.maxLen > 0 && len(got) > tc.maxLen {
				t.Fatalf("Quote returned %d bytes, want at most %d", len(got), tc.maxLen)
			}
			if tc.hasSize && !strings.Contains(got, "bytes)") {
				t.Fatalf("Quote = %s: does not say the input's size", got)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("Quote = %q: not valid UTF-8", got)
			}
		})
	}
}
