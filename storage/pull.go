package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/docker/distribution/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
)

// Auth is the registry credentials a pull request carries (the CRI's
// AuthConfig). ServerAddress is informational: the credentials go to the
// registry the reference names, and never to a mirror or a location
// registries.conf rewrites it to (the image library's rule, so that a
// mirror cannot harvest them); those get the user's auth files' entries.
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 of "username:password"
	IdentityToken string
	RegistryToken string
	ServerAddress string
}

// ProgressEvent says what happened to one blob of a pull.
type ProgressEvent string

const (
	ProgressStarted ProgressEvent = "started" // the blob's download began
	ProgressRead    ProgressEvent = "read"    // more bytes arrived
	ProgressDone    ProgressEvent = "done"    // the blob is stored
	ProgressSkipped ProgressEvent = "skipped" // the blob was already stored
)

// Progress reports on one blob (a layer or the config) of a pull.
type Progress struct {
	Ref    string // the normalized reference being pulled
	Digest string // the blob's digest
	Event  ProgressEvent
	Offset uint64 // bytes of the blob transferred so far
	Total  int64  // the blob's size; -1 when unknown
}

// progressInterval paces Read events.
const progressInterval = 200 * time.Millisecond

// pullKey identifies pulls that may share one transfer: the same
// reference with the same credentials.
type pullKey struct {
	ref  string
	auth Auth
}

// pullCall is one transfer and the callers waiting for it.
type pullCall struct {
	done     chan struct{}
	img      Image
	err      error
	cancel   context.CancelFunc
	waiters  int
	watchers map[int]func(Progress)
	nextID   int
}

// Pull fetches ref from its registry (through registries.conf rewrites
// and mirrors) and stores it, returning the stored image; its ID is the
// image_ref the CRI answers. Concurrent pulls of the same reference with
// the same credentials share one transfer. When every caller waiting for a
// transfer gives up, it is cancelled and leaves nothing behind. progress,
// when not nil, receives events one at a time and must not block.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth, progress func(Progress)) (Image, error) {
	named, err := parseReference(ref)
	if err != nil {
		return Image{}, err
	}
	key := pullKey{ref: named.String()}
	if auth != nil {
		key.auth = *auth
	}
	call, watcher := s.joinPull(ctx, key, named, progress)
	select {
	case <-call.done:
		return call.img, call.err
	case <-ctx.Done():
		s.leavePull(key, call, watcher)
		return Image{}, fmt.Errorf("pulling %s: %w", named, ctx.Err())
	}
}

// joinPull attaches the caller to the running transfer of key, starting
// one when there is none.
func (s *Store) joinPull(ctx context.Context, key pullKey, named reference.Named, progress func(Progress)) (*pullCall, int) {
	s.pullsMu.Lock()
	defer s.pullsMu.Unlock()
	call := s.pulls[key]
	if call == nil {
		// The transfer outlives any one caller, so it gets its own
		// cancellation; values (loggers, traces) still flow.
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		call = &pullCall{done: make(chan struct{}), cancel: cancel, watchers: map[int]func(Progress){}}
		s.pulls[key] = call
		go s.runPull(pctx, key, named, call)
	}
	call.waiters++
	call.nextID++
	if progress != nil {
		call.watchers[call.nextID] = progress
	}
	return call, call.nextID
}

// leavePull detaches a caller that gave up. The last one to leave cancels
// the transfer and waits for its clean-up, so that when Pull returns
// nothing partial is left.
func (s *Store) leavePull(key pullKey, call *pullCall, watcher int) {
	s.pullsMu.Lock()
	call.waiters--
	delete(call.watchers, watcher)
	last := call.waiters == 0
	if last && s.pulls[key] == call {
		delete(s.pulls, key) // later callers start afresh
	}
	s.pullsMu.Unlock()
	if last {
		call.cancel()
		<-call.done
	}
}

func (s *Store) runPull(ctx context.Context, key pullKey, named reference.Named, call *pullCall) {
	defer close(call.done)
	defer call.cancel()
	s.act.begin()
	img, err := s.pullImage(ctx, named, key.auth, func(p Progress) { s.notify(call, p) })
	s.act.end(err != nil)
	s.pullsMu.Lock()
	if s.pulls[key] == call {
		delete(s.pulls, key)
	}
	call.img, call.err = img, err
	s.pullsMu.Unlock()
	if err != nil {
		s.log.Warn("image pull failed", "ref", named.String(), "err", err)
		return
	}
	s.log.Info("image pulled", "ref", named.String(), "image", img.ID)
}

// notify passes a progress event to the callers still waiting.
func (s *Store) notify(call *pullCall, p Progress) {
	s.pullsMu.Lock()
	watchers := make([]func(Progress), 0, len(call.watchers))
	for _, w := range call.watchers {
		watchers = append(watchers, w)
	}
	s.pullsMu.Unlock()
	for _, w := range watchers {
		w(p)
	}
}

// pullImage copies one image from its registry into the store.
func (s *Store) pullImage(ctx context.Context, named reference.Named, auth Auth, progress func(Progress)) (Image, error) {
	sys := s.systemContext()
	if err := applyAuth(sys, auth); err != nil {
		return Image{}, err
	}
	if err := checkNotBlocked(sys, named); err != nil {
		return Image{}, err
	}
	srcRef, err := docker.NewReference(named)
	if err != nil {
		return Image{}, fmt.Errorf("%w: %s: %v", errdefs.ErrInvalidArgument, named, err)
	}
	destRef, err := istorage.Transport.NewStoreReference(s.store, named, "")
	if err != nil {
		return Image{}, fmt.Errorf("storage: %s: %w", named, err)
	}
	resolvedRef, top, err := s.fetchImage(ctx, sys, srcRef, destRef, named.String(), progress)
	if err != nil {
		return Image{}, classifyPullError(sys, named, err)
	}
	steptrace.Mark(ctx, "copy")
	stored, err := istorage.Transport.GetStoreImage(s.store, resolvedRef)
	if err != nil {
		return Image{}, fmt.Errorf("storage: finding pulled image %s: %w", named, err)
	}
	if top != "" && stored.TopLayer != top {
		// The library stored the layers again under ids of its own: the
		// staged ones are garbage, collected when this pull ends.
		s.log.Warn("pulled image does not use its staged layers", "ref", named.String(), "top", stored.TopLayer, "staged", top)
		s.act.markDirty()
	}
	defer steptrace.Mark(ctx, "describe")
	return s.describe(ctx, stored)
}

// fetchImage opens the registry source once, stages the image's layers
// (stage.go) and copies the image into the store under the signature
// policy, returning the stored image's reference and the id of the top
// layer the staging stored ("" when it did not store them all).
func (s *Store) fetchImage(ctx context.Context, sys *types.SystemContext, src, dest types.ImageReference, name string, progress func(Progress)) (types.ImageReference, string, error) {
	policy, err := signature.NewPolicyContext(s.conf.Load().policy)
	if err != nil {
		return nil, "", fmt.Errorf("storage: signature policy: %w", err)
	}
	defer policy.Destroy()
	steptrace.Mark(ctx, "policy")
	raw, err := src.NewImageSource(ctx, sys)
	if err != nil {
		return nil, "", fmt.Errorf("initializing source %s: %w", transports.ImageName(src), err)
	}
	defer raw.Close()
	opened := &keptOpen{ImageSource: raw}
	var progressMu sync.Mutex // layers are staged at once: one event at a time
	named := func(p Progress) {
		if progress != nil {
			progressMu.Lock()
			defer progressMu.Unlock()
			p.Ref = name
			progress(p)
		}
	}
	staged, err := s.stageLayers(ctx, sys, policy, opened, named)
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		// The copy below does the work the staging could not, and
		// reports its errors the usual way.
		s.log.Debug("pulling without staged layers", "ref", name, "err", err)
	}
	if progress != nil {
		// The copy finds the staged layers stored: their transfer was
		// reported already.
		inner := progress
		progress = func(p Progress) {
			if p.Event != ProgressSkipped || !staged.fetched[digest.Digest(p.Digest)] {
				inner(p)
			}
		}
	}
	ref, err := s.copyWithPolicy(ctx, sys, policy, openedSource{ImageReference: src, src: opened}, dest, name, progress)
	return ref, staged.top, err
}

// copyImage runs one go.podman.io/image copy into the store under the
// signature policy and returns the stored image's reference.
func (s *Store) copyImage(ctx context.Context, sys *types.SystemContext, src, dest types.ImageReference, name string, progress func(Progress)) (types.ImageReference, error) {
	policy, err := signature.NewPolicyContext(s.conf.Load().policy)
	if err != nil {
		return nil, fmt.Errorf("storage: signature policy: %w", err)
	}
	defer policy.Destroy()
	return s.copyWithPolicy(ctx, sys, policy, src, dest, name, progress)
}

func (s *Store) copyWithPolicy(ctx context.Context, sys *types.SystemContext, policy *signature.PolicyContext, src, dest types.ImageReference, name string, progress func(Progress)) (types.ImageReference, error) {
	// The copy may create layers: no staged layer is stored meanwhile
	// (see applyLayer).
	s.stageMu.RLock()
	defer s.stageMu.RUnlock()
	var resolvedRef types.ImageReference
	opts := &copy.Options{
		SourceCtx:               sys,
		DestinationCtx:          sys,
		ReportResolvedReference: &resolvedRef,
	}
	var wg sync.WaitGroup
	if progress != nil {
		ch := make(chan types.ProgressProperties)
		opts.Progress, opts.ProgressInterval = ch, progressInterval
		wg.Go(func() { forwardProgress(ch, name, progress) })
		defer func() { close(ch); wg.Wait() }()
	}
	if _, err := copy.Image(ctx, policy, dest, src, opts); err != nil {
		return nil, err
	}
	if resolvedRef == nil {
		return nil, fmt.Errorf("storage: copying %s: the image library did not report the stored image", name)
	}
	return resolvedRef, nil
}

func forwardProgress(ch <-chan types.ProgressProperties, name string, progress func(Progress)) {
	events := map[types.ProgressEvent]ProgressEvent{
		types.ProgressEventNewArtifact: ProgressStarted,
		types.ProgressEventRead:        ProgressRead,
		types.ProgressEventDone:        ProgressDone,
		types.ProgressEventSkipped:     ProgressSkipped,
	}
	for p := range ch {
		ev, ok := events[p.Event]
		if !ok {
			continue
		}
		progress(Progress{Ref: name, Digest: p.Artifact.Digest.String(), Event: ev, Offset: p.Offset, Total: p.Artifact.Size})
	}
}

// applyAuth puts the request's credentials into sys. Without any, the
// user's auth files (auth.json, ~/.docker/config.json) apply.
func applyAuth(sys *types.SystemContext, a Auth) error {
	user, pass := a.Username, a.Password
	if a.Auth != "" {
		decoded, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return fmt.Errorf("%w: auth is not base64: %v", errdefs.ErrInvalidArgument, err)
		}
		var ok bool
		user, pass, ok = strings.Cut(string(decoded), ":")
		if !ok {
			return fmt.Errorf("%w: auth is not base64 of username:password", errdefs.ErrInvalidArgument)
		}
	}
	if user != "" || pass != "" || a.IdentityToken != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass, IdentityToken: a.IdentityToken}
	}
	sys.DockerBearerRegistryToken = a.RegistryToken
	return nil
}

// checkNotBlocked refuses a reference registries.conf blocks, before any
// connection is made.
func checkNotBlocked(sys *types.SystemContext, named reference.Named) error {
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		return fmt.Errorf("storage: reading registries.conf: %w", err)
	}
	if reg != nil && reg.Blocked {
		return fmt.Errorf("%w: registry %s is blocked by registries.conf (pulling %s)", errdefs.ErrPermissionDenied, reg.Prefix, named)
	}
	return nil
}

// registryName names the registry of named for error messages, with the
// hosts registries.conf sends its pulls to (mirrors, then the location)
// when they differ from it.
func registryName(sys *types.SystemContext, named reference.Named) string {
	host := reference.Domain(named)
	reg, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil || reg == nil {
		return host
	}
	var hosts []string
	for _, loc := range append(mirrorLocations(reg), reg.Location) {
		h, _, _ := strings.Cut(loc, "/")
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 || (len(hosts) == 1 && hosts[0] == host) {
		return host
	}
	return fmt.Sprintf("%s (via %s)", host, strings.Join(hosts, ", "))
}

func mirrorLocations(reg *sysregistriesv2.Registry) []string {
	var locs []string
	for _, m := range reg.Mirrors {
		locs = append(locs, m.Location)
	}
	return locs
}

// classifyPullError wraps a failed pull in the errdefs kind a client can
// act on, naming the registry.
func classifyPullError(sys *types.SystemContext, named reference.Named, err error) error {
	where := registryName(sys, named)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pulling %s: %w", named, err)
	}
	var unauthorized docker.ErrUnauthorizedForCredentials
	var policyErr signature.PolicyRequirementError
	var status docker.UnexpectedHTTPStatusError
	var coded errcode.ErrorCoder
	switch {
	case errors.As(err, &unauthorized):
		return fmt.Errorf("%w: registry %s refused the credentials for %s: %v", errdefs.ErrPermissionDenied, where, named, err)
	case errors.As(err, &policyErr):
		return fmt.Errorf("%w: signature policy rejected %s: %v", errdefs.ErrPermissionDenied, named, err)
	case errors.As(err, &coded):
		switch coded.ErrorCode().String() {
		case "UNAUTHORIZED", "DENIED":
			return fmt.Errorf("%w: registry %s denied access to %s: %v", errdefs.ErrPermissionDenied, where, named, err)
		case "MANIFEST_UNKNOWN", "NAME_UNKNOWN":
			return fmt.Errorf("%w: image %s is not in registry %s: %v", errdefs.ErrNotFound, named, where, err)
		case "TOOMANYREQUESTS", "UNAVAILABLE":
			return fmt.Errorf("%w: registry %s: %v", errdefs.ErrUnavailable, where, err)
		}
	case errors.As(err, &status):
		switch {
		case status.StatusCode == 401 || status.StatusCode == 403:
			return fmt.Errorf("%w: registry %s denied access to %s: %v", errdefs.ErrPermissionDenied, where, named, err)
		case status.StatusCode == 404:
			return fmt.Errorf("%w: image %s is not in registry %s: %v", errdefs.ErrNotFound, named, where, err)
		case status.StatusCode == 429 || status.StatusCode >= 500:
			return fmt.Errorf("%w: registry %s: %v", errdefs.ErrUnavailable, where, err)
		}
	case errors.Is(err, docker.ErrTooManyRequests):
		return fmt.Errorf("%w: registry %s: %v", errdefs.ErrUnavailable, where, err)
	case isNetworkError(err):
		return fmt.Errorf("%w: registry %s is unreachable: %v", errdefs.ErrUnavailable, where, err)
	}
	return fmt.Errorf("pulling %s from %s: %w", named, where, err)
}

// isNetworkError reports failures to reach or talk to a registry at all.
func isNetworkError(err error) bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &urlErr) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}
