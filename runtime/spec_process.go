package runtime

import (
	"fmt"
	"path"
	"strings"

	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// defaultPath is the PATH a container gets when neither the image nor the
// request sets one (the value Docker, containerd and CRI-O use).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// setProcess fills the command line, environment, working directory and
// terminal of the container's first process.
func (b *specBuilder) setProcess() error {
	img := imageConfig(b.in)
	args, err := commandLine(b.in.Config.GetCommand(), b.in.Config.GetArgs(), img)
	if err != nil {
		return err
	}
	env, err := b.environment(img)
	if err != nil {
		return err
	}
	cwd, err := workingDir(b.in.Config.GetWorkingDir(), img.WorkingDir)
	if err != nil {
		return err
	}
	p := b.spec.Process
	p.Args, p.Env, p.Cwd = args, env, cwd
	p.Terminal = b.in.Config.GetTty()
	return nil
}

func imageConfig(in SpecInput) imgspec.ImageConfig {
	if in.Image == nil {
		return imgspec.ImageConfig{}
	}
	return in.Image.Config
}

// commandLine applies the Kubernetes rules: a command replaces the image's
// Entrypoint and drops its Cmd; args alone replace only Cmd.
func commandLine(command, args []string, img imgspec.ImageConfig) ([]string, error) {
	var out []string
	switch {
	case len(command) > 0:
		out = append(out, command...)
		out = append(out, args...)
	case len(args) > 0:
		out = append(out, entrypoint(img)...)
		out = append(out, args...)
	default:
		out = append(out, entrypoint(img)...)
		out = append(out, img.Cmd...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no command: the request and the image set neither command nor args", errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// entrypoint treats ENTRYPOINT [""] as none, as Docker does (it is how a
// Dockerfile resets an inherited entrypoint).
func entrypoint(img imgspec.ImageConfig) []string {
	if len(img.Entrypoint) == 1 && img.Entrypoint[0] == "" {
		return nil
	}
	return img.Entrypoint
}

// environment merges, in rising precedence: the default PATH, HOSTNAME of
// the pod, the image's Env and the request's envs. A later value replaces an
// earlier one in place, so the order stays stable.
func (b *specBuilder) environment(img imgspec.ImageConfig) ([]string, error) {
	var env envList
	env.set(defaultPath)
	if h := b.in.Sandbox.GetHostname(); h != "" {
		env.set("HOSTNAME=" + h)
	}
	for _, kv := range img.Env {
		env.set(kv)
	}
	for _, kv := range b.in.Config.GetEnvs() {
		if kv.GetKey() == "" || strings.Contains(kv.GetKey(), "=") {
			return nil, fmt.Errorf("%w: invalid environment variable name %q", errdefs.ErrInvalidArgument, kv.GetKey())
		}
		env.set(kv.GetKey() + "=" + string(kv.GetValue()))
	}
	return env.items, nil
}

// envList is an ordered KEY=VALUE list where setting a key twice keeps its
// first position and its last value.
type envList struct {
	items []string
	index map[string]int
}

func (l *envList) set(kv string) {
	key, _, _ := strings.Cut(kv, "=")
	if l.index == nil {
		l.index = map[string]int{}
	}
	if i, ok := l.index[key]; ok {
		l.items[i] = kv
		return
	}
	l.index[key] = len(l.items)
	l.items = append(l.items, kv)
}

func workingDir(requested, image string) (string, error) {
	dir := requested
	if dir == "" {
		dir = image
	}
	if dir == "" {
		return "/", nil
	}
	if !path.IsAbs(dir) {
		return "", fmt.Errorf("%w: working directory %q is not absolute", errdefs.ErrInvalidArgument, dir)
	}
	return path.Clean(dir), nil
}
