package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestRemove(t *testing.T) {
	ctx := context.Background()
	base := fx.images["base"]
	digestRef := "example.test/test/base@" + base.manifest.String()
	tests := []struct {
		name     string
		removeBy []string // removed in turn
		wantTags []string // of the image afterwards; nil means gone
	}{
		{"by id", []string{base.id}, nil},
		{"by sha256 id", []string{"sha256:" + base.id}, nil},
		{"by digest", []string{digestRef}, nil},
		{"one of two tags", []string{ref("base")}, []string{"mirrored.test/test/base:latest"}},
		{"both tags", []string{ref("base"), "mirrored.test/test/base:latest"}, nil},
		{"twice by id", []string{base.id, base.id}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			for _, r := range []string{ref("base"), "mirrored.test/test/base"} {
				if _, err := s.Pull(ctx, r, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range tc.removeBy {
				if err := s.Remove(ctx, r); err != nil {
					t.Fatalf("Remove(%s): %v", r, err)
				}
			}
			img, err := s.Status(ctx, base.id)
			if tc.wantTags == nil {
				if !errors.Is(err, errdefs.ErrNotFound) {
					t.Fatalf("Status after removal = %v, want ErrNotFound", err)
				}
				assertEmpty(t, s)
				return
			}
			if err != nil || !slices.Equal(img.RepoTags, tc.wantTags) {
				t.Errorf("tags after removal = %v (%v), want %v", img.RepoTags, err, tc.wantTags)
			}
		})
	}
}

func TestRemoveRefusedWhileAContainerUsesTheImage(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img, err := s.Pull(ctx, ref("base"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateContainer(ctx, "", "web-1", img.ID, "", `{"pod":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{img.ID, ref("base")} {
		err := s.Remove(ctx, r)
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "web-1") {
			t.Errorf("Remove(%s) with a container = %v, want ErrFailedPrecondition naming web-1", r, err)
		}
	}
	if err := s.DeleteContainer(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, img.ID); err != nil {
		t.Fatalf("Remove after the container went: %v", err)
	}
	assertEmpty(t, s)
}

func TestPinnedImages(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, func(o *Options) { o.Pinned = []string{"example.test/test/base"} })
	for _, name := range []string{"base", "app"} {
		if _, err := s.Pull(ctx, ref(name), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	images, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		if want := img.ID == fx.images["base"].id; img.Pinned != want {
			t.Errorf("image %v pinned = %v", img.RepoTags, img.Pinned)
		}
	}
}

func TestUserID(t *testing.T) {
	tests := []struct {
		user     string
		wantUID  int64
		hasUID   bool
		wantName string
	}{
		{"", 0, false, ""},
		{"1000", 1000, true, ""},
		{"1003:1004", 1003, true, ""},
		{"www-data", 0, false, "www-data"},
		{"www-data:1004", 0, false, "www-data"},
		{"0", 0, true, ""},
	}
	for _, tc := range tests {
		uid, name := Image{User: tc.user}.UserID()
		if (uid != nil) != tc.hasUID || (uid != nil && *uid != tc.wantUID) || name != tc.wantName {
			t.Errorf("UserID(%q) = %v, %q", tc.user, uid, name)
		}
	}
}

func linkCount(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Nlink)
}

// critest removes one image from several clients at once: every call must
// succeed, whichever of them deletes it.
func TestConcurrentRemovalsAllSucceed(t *testing.T) {
	ctx := context.Background()
	for round := range 5 {
		s := newStore(t)
		img, err := s.Pull(ctx, ref("base"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() { errs <- s.Remove(ctx, img.ID) }()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: concurrent Remove: %v", round, err)
			}
		}
		if _, err := s.Status(ctx, img.ID); err == nil {
			t.Fatalf("round %d: image still there", round)
		}
	}
}
