package streaming

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sessionCache keeps the request behind each handed-out URL until the
// URL is used once or expires. The URL is all a client presents, so its
// token is random and unguessable.
type sessionCache struct {
	ttl     time.Duration
	limit   int
	now     func() time.Time
	mu      sync.Mutex
	pending map[string]pendingSession
}

type pendingSession struct {
	req     any
	expires time.Time
}

func newSessionCache(ttl time.Duration, limit int, now func() time.Time) *sessionCache {
	return &sessionCache{ttl: ttl, limit: limit, now: now, pending: map[string]pendingSession{}}
}

func (c *sessionCache) insert(req any) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.dropExpired(now)
	if len(c.pending) >= c.limit {
		return "", status.Errorf(codes.ResourceExhausted, "%d streaming sessions wait for their client already", len(c.pending))
	}
	token, err := newSessionToken()
	if err != nil {
		return "", status.Errorf(codes.Internal, "streaming session token: %v", err)
	}
	c.pending[token] = pendingSession{req: req, expires: now.Add(c.ttl)}
	return token, nil
}

// take removes the token's request and returns it if it has not expired.
func (c *sessionCache) take(token string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pending[token]
	if !ok {
		return nil, false
	}
	delete(c.pending, token)
	return p.req, !c.now().After(p.expires)
}

func (c *sessionCache) dropExpired(now time.Time) {
	for token, p := range c.pending {
		if now.After(p.expires) {
			delete(c.pending, token)
		}
	}
}

// takeSession takes the token's request if it is of the kind the URL
// path names: an exec token on /attach/ is used up and refused.
func takeSession[T any](c *sessionCache, token string) (T, bool) {
	req, ok := c.take(token)
	typed, isT := req.(T)
	return typed, ok && isT
}

// newSessionToken is 128 random bits, URL-safe.
func newSessionToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
