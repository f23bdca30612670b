package main

import (
	"bytes"
	"testing"

	"github.com/crib-dev/crib/internal/golden"
)

// TestImagesMarkdownIsCurrent: IMAGES.md is generated from the spec; this
// fails when one changed without the other (go test -update regenerates).
func TestImagesMarkdownIsCurrent(t *testing.T) {
	var buf bytes.Buffer
	if err := writeMarkdown(&buf, mustSpec(t), "127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "../IMAGES.md", buf.Bytes())
}
