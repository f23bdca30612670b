package main

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite ../IMAGES.md from images.toml")

// TestImagesMarkdownIsCurrent: IMAGES.md is generated from the spec; this
// fails when one changed without the other (go test -update regenerates).
func TestImagesMarkdownIsCurrent(t *testing.T) {
	var buf bytes.Buffer
	if err := writeMarkdown(&buf, mustSpec(t), "127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	const golden = "../IMAGES.md"
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s is stale: run go test ./conformance/imagegen -run Markdown -update", golden)
	}
}
