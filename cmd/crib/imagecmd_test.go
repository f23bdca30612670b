package main

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/crib-dev/crib/internal/golden"
	"github.com/crib-dev/crib/storage"
)

func TestWriteImageTableGolden(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	images := []storage.Image{
		{
			ID:       "3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741",
			RepoTags: []string{"docker.io/library/busybox:latest", "docker.io/library/busybox:1.36"},
			Size:     4_261_550,
			Created:  now.Add(-3 * 24 * time.Hour),
		},
		{
			ID:       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			RepoTags: []string{"localhost:5000/team/app:v2"},
			Size:     187_000_000,
			Created:  now.Add(-400 * 24 * time.Hour),
		},
		{
			ID:          "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
			RepoDigests: []string{"registry.k8s.io/pause@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097"},
			Size:        320_000,
			Created:     now.Add(-90 * time.Second),
		},
		{
			ID:   "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff",
			Size: 999,
		},
	}
	var out bytes.Buffer
	if err := WriteImageTable(&out, images, now); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "image-ls.golden"), out.Bytes())
}

func TestSplitTag(t *testing.T) {
	tests := []struct{ name, repo, tag string }{
		{"docker.io/library/busybox:1.36", "docker.io/library/busybox", "1.36"},
		{"localhost:5000/app:v2", "localhost:5000/app", "v2"},
		{"localhost:5000/app", "localhost:5000/app", "<none>"},
		{"app", "app", "<none>"},
	}
	for _, tc := range tests {
		if repo, tag := splitTag(tc.name); repo != tc.repo || tag != tc.tag {
			t.Errorf("splitTag(%q) = %q, %q; want %q, %q", tc.name, repo, tag, tc.repo, tc.tag)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{10 * time.Second, "less than a minute ago"},
		{time.Minute, "1 minute ago"},
		{59 * time.Minute, "59 minutes ago"},
		{2 * time.Hour, "2 hours ago"},
		{day, "1 day ago"},
		{13 * day, "13 days ago"},
		{20 * day, "2 weeks ago"},
		{90 * day, "3 months ago"},
		{800 * day, "2 years ago"},
		{-time.Hour, "in the future"},
	}
	for _, tc := range tests {
		if got := age(now.Add(-tc.ago), now); got != tc.want {
			t.Errorf("age(-%v) = %q, want %q", tc.ago, got, tc.want)
		}
	}
	if got := age(time.Time{}, now); got != "unknown" {
		t.Errorf("age(zero) = %q", got)
	}
}
