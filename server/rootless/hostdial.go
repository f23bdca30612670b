package rootless

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The host dialer lets the daemon, which lives in crib's own network
// namespace, open TCP connections from the host's network namespace. Image
// pulls need it: a registry on the host's 127.0.0.1 (the offline test
// registry, a local mirror) is not reachable from inside crib's namespace,
// and slirp4netns hides the host's loopback on purpose.
//
// Filesystem unix sockets are not bound to a network namespace, so the
// parent (host namespaces) listens on one and serves it with the same dial
// relay the child serves for the portal (serveDialRelay, portal.go): for
// each connection the child writes "tcp host:port\n", the parent dials it
// and answers "OK\n" or "ERR reason\n", then both ends copy bytes. Inside crib's namespace a tiny
// SOCKS5 front on 127.0.0.1 turns that into a proxy URL that
// containers/image and net/http understand.

const hostDialTimeout = 15 * time.Second

// dialViaHost opens a connection to target from the host's namespaces
// through the relay socket at sockPath.
func dialViaHost(ctx context.Context, sockPath, target string) (net.Conn, error) {
	return dialViaRelay(ctx, sockPath, "tcp "+target)
}

// dialViaRelay sends one request line to the relay at sockPath and, once
// it answers OK, returns the connection carrying the relayed bytes.
func dialViaRelay(ctx context.Context, sockPath, request string) (net.Conn, error) {
	target := request
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sockPath)
	if err != nil {
		return nil, fmt.Errorf("reaching crib's host dialer: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, request+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	reply, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("host dialer: %w", err)
	}
	c.SetDeadline(time.Time{})
	if reply = strings.TrimSpace(reply); reply != "OK" {
		c.Close()
		return nil, fmt.Errorf("dialing %s from the host: %s", target, strings.TrimPrefix(reply, "ERR "))
	}
	return &bufferedConn{Conn: c, r: br}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go half(a, b)
	go half(b, a)
	wg.Wait()
}

// socksFront is a minimal SOCKS5 server (RFC 1928, CONNECT only) whose
// every connection is dialled from the host through the relay. It listens
// on TCP in crib's network namespace, which hostNetwork pods share: without
// a login any such pod would reach the host's loopback through it (a local
// registry, anything else listening there), around slirp4netns'
// --disable-host-loopback. So it takes only a username/password login
// (RFC 1929) with a 128-bit secret, which lives in the URL published in
// crib's 0700 runroot and nowhere a pod can read.
type socksFront struct {
	listener net.Listener
	relay    string
	secret   string
	log      *slog.Logger
}

// pullProxyUser is the user name of the pull proxy's login; the password
// is what keeps pods out.
const pullProxyUser = "crib"

// startSocksFront listens on prefer's address (the one an earlier crib
// used in the same namespace, so that a client configured with its URL —
// a kubelet's kubeconfig proxy-url — keeps working across restarts), else
// on a free loopback port. prefer's secret is kept with its address; a
// URL without a well-formed one gets a fresh secret.
func startSocksFront(ctx context.Context, relaySock string, prefer *url.URL, log *slog.Logger) (*socksFront, error) {
	var addr string
	secret := proxySecret(prefer)
	if prefer != nil {
		addr = prefer.Host
	}
	if secret == "" {
		var err error
		if secret, err = newProxySecret(); err != nil {
			return nil, fmt.Errorf("pull proxy secret: %w", err)
		}
	}
	l, err := listenPreferred(addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the pull proxy: %w", err)
	}
	f := &socksFront{listener: l, relay: relaySock, secret: secret, log: log}
	go func() { <-ctx.Done(); l.Close() }()
	go f.serve(ctx)
	return f, nil
}

// newProxySecret is 128 random bits, URL-safe.
func newProxySecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// proxySecret is u's password when u is a pull proxy URL carrying a
// secret of the size crib makes, else "".
func proxySecret(u *url.URL) string {
	if u == nil || u.User == nil || u.User.Username() != pullProxyUser {
		return ""
	}
	pass, _ := u.User.Password()
	if b, err := base64.RawURLEncoding.DecodeString(pass); err != nil || len(b) != 16 {
		return ""
	}
	return pass
}

func listenPreferred(prefer string) (net.Listener, error) {
	if prefer != "" {
		if l, err := net.Listen("tcp", prefer); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// URL is the proxy URL, login included, to give to HTTP clients inside
// crib's namespace.
func (f *socksFront) URL() string {
	u := url.URL{Scheme: "socks5", User: url.UserPassword(pullProxyUser, f.secret), Host: f.listener.Addr().String()}
	return u.String()
}

func (f *socksFront) serve(ctx context.Context) {
	for {
		c, err := f.listener.Accept()
		if err != nil {
			return
		}
		go f.handle(ctx, c)
	}
}

func (f *socksFront) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(hostDialTimeout))
	target, err := socksHandshake(c, pullProxyUser, f.secret)
	if err != nil {
		f.log.Debug("socks handshake", "err", err)
		return
	}
	up, err := dialViaHost(ctx, f.relay, target)
	if err != nil {
		f.log.Debug("pull proxy dial", "target", target, "err", err)
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // connection refused
		return
	}
	defer up.Close()
	if _, err := c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	splice(c, up)
}

// socksHandshake reads a SOCKS5 greeting, a username/password login that
// must match user and pass, and a CONNECT request, and returns the target
// as host:port.
func socksHandshake(rw io.ReadWriter, user, pass string) (string, error) {
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(rw, hdr); err != nil {
		return "", err
	}
	if hdr[0] != 5 {
		return "", errors.New("not SOCKS5")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(rw, methods); err != nil {
		return "", err
	}
	if !bytes.Contains(methods, []byte{socksUserPass}) {
		rw.Write([]byte{5, 0xff}) // no acceptable method
		return "", errors.New("SOCKS client offered no username/password login")
	}
	if _, err := rw.Write([]byte{5, socksUserPass}); err != nil {
		return "", err
	}
	if err := socksLogin(rw, user, pass); err != nil {
		return "", err
	}
	req := make([]byte, 4)
	if _, err := io.ReadFull(rw, req); err != nil {
		return "", err
	}
	if req[1] != 1 {
		rw.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}) // command not supported
		return "", fmt.Errorf("SOCKS command %d not supported", req[1])
	}
	var host string
	switch req[3] {
	case 1, 4: // IPv4, IPv6
		ip := make([]byte, map[byte]int{1: 4, 4: 16}[req[3]])
		if _, err := io.ReadFull(rw, ip); err != nil {
			return "", err
		}
		host = net.IP(ip).String()
	case 3: // domain name
		n := make([]byte, 1)
		if _, err := io.ReadFull(rw, n); err != nil {
			return "", err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(rw, name); err != nil {
			return "", err
		}
		host = string(name)
	default:
		return "", fmt.Errorf("SOCKS address type %d not supported", req[3])
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(rw, port); err != nil {
		return "", err
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), nil
}

// socksUserPass is RFC 1929's method number.
const socksUserPass = 2

// socksLogin reads an RFC 1929 username/password request and answers
// success only for user and pass.
func socksLogin(rw io.ReadWriter, user, pass string) error {
	ver := make([]byte, 2)
	if _, err := io.ReadFull(rw, ver); err != nil {
		return err
	}
	if ver[0] != 1 {
		return fmt.Errorf("SOCKS login version %d", ver[0])
	}
	gotUser := make([]byte, ver[1])
	if _, err := io.ReadFull(rw, gotUser); err != nil {
		return err
	}
	n := make([]byte, 1)
	if _, err := io.ReadFull(rw, n); err != nil {
		return err
	}
	gotPass := make([]byte, n[0])
	if _, err := io.ReadFull(rw, gotPass); err != nil {
		return err
	}
	userOK := subtle.ConstantTimeCompare(gotUser, []byte(user))
	passOK := subtle.ConstantTimeCompare(gotPass, []byte(pass))
	if userOK&passOK != 1 {
		rw.Write([]byte{1, 1})
		return errors.New("SOCKS login refused")
	}
	_, err := rw.Write([]byte{1, 0})
	return err
}

func removeStale(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("removing stale socket", "path", path, "err", err)
	}
}
