package storage

import (
	"errors"
	"testing"

	"github.com/crib-dev/crib/internal/errdefs"
)

func TestNormalize(t *testing.T) {
	const d = "sha256:9700f9a2f5bf4ed6d4d30cc4a1d5ed05ef64d5cfa1b7e7b7c1e6ffd3cb1c6ff9"
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{in: "user/app", want: "docker.io/user/app:latest"},
		{in: "registry.k8s.io/pause:3.9", want: "registry.k8s.io/pause:3.9"},
		{in: "localhost:5000/x", want: "localhost:5000/x:latest"},
		{in: "127.0.0.1:5000/x/y:tag", want: "127.0.0.1:5000/x/y:tag"},
		{in: "busybox@" + d, want: "docker.io/library/busybox@" + d},
		{in: "busybox:1.36@" + d, want: "docker.io/library/busybox@" + d},
		{in: "", bad: true},
		{in: "UPPER", bad: true},
		{in: "busybox:", bad: true},
		{in: "busybox@sha256:short", bad: true},
		{in: "a b", bad: true},
		{in: "9700f9a2f5bf4ed6d4d30cc4a1d5ed05ef64d5cfa1b7e7b7c1e6ffd3cb1c6ff9", bad: true},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.in)
		if tc.bad {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("Normalize(%q) = %q, %v; want ErrInvalidArgument", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
