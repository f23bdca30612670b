package rootless

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/crib-dev/crib/internal/memtrim"
)

// The portal makes ports inside crib's network namespace reachable from the
// host's: hostPort mappings of pods, the streaming server and the metrics
// endpoint. The
// parent, in the host namespaces, binds the host port; for every TCP
// connection or UDP flow it dials the child's target dialer over a unix
// socket, naming the target inside crib's namespace ("tcp 10.88.0.5:80").
// The child dials it there and both copy bytes. This is the shape of
// rootlesskit's builtin port driver, kept small and owned here.
//
// The child asks the parent to bind or release ports over a control socket
// with one JSON request per connection.

const (
	controlSocketName    = "control.sock"
	targetDialSocketName = "portdial.sock"
	udpFlowIdle          = 60 * time.Second
	maxDatagram          = 65535
)

// PortForward is one host port the parent forwards into crib's namespace.
type PortForward struct {
	Protocol string `json:"protocol"` // tcp or udp
	HostIP   string `json:"hostIP"`   // "" or 0.0.0.0: all host addresses
	HostPort int    `json:"hostPort"`
	Target   string `json:"target"` // host:port inside crib's namespace
}

type controlRequest struct {
	Op    string        `json:"op"` // expose, unexpose
	Owner string        `json:"owner"`
	Ports []PortForward `json:"ports,omitempty"`
}

type controlReply struct {
	Error string `json:"error,omitempty"`
}

// portal is the parent's side: the host-side listeners by owner.
type portal struct {
	targetSock string // the child's target dialer
	log        *slog.Logger
	// idler counts control requests and forwarded connections as work,
	// after which the parent trims its memory; nil in tests.
	idler *memtrim.Idler

	mu     sync.Mutex
	owners map[string][]io.Closer
}

func newPortal(targetSock string, log *slog.Logger) *portal {
	return &portal{targetSock: targetSock, log: log, owners: map[string][]io.Closer{}}
}

func (p *portal) serveControl(ctx context.Context, l net.Listener) {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.idler.Begin()
		go func() {
			defer p.idler.End()
			p.handleControl(ctx, c)
		}()
	}
}

func (p *portal) handleControl(ctx context.Context, c net.Conn) {
	defer c.Close()
	var req controlRequest
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		return
	}
	var err error
	switch req.Op {
	case "expose":
		err = p.expose(ctx, req.Owner, req.Ports)
	case "unexpose":
		p.unexpose(req.Owner)
	default:
		err = fmt.Errorf("unknown portal operation %q", req.Op)
	}
	reply := controlReply{}
	if err != nil {
		reply.Error = err.Error()
	}
	json.NewEncoder(c).Encode(reply)
}

// expose binds every port or none: a failure releases the ones already bound.
func (p *portal) expose(ctx context.Context, owner string, ports []PortForward) error {
	var bound []io.Closer
	for _, pf := range ports {
		cl, err := p.bind(ctx, pf)
		if err != nil {
			for _, b := range bound {
				b.Close()
			}
			return err
		}
		bound = append(bound, cl)
	}
	p.mu.Lock()
	p.owners[owner] = append(p.owners[owner], bound...)
	p.mu.Unlock()
	return nil
}

func (p *portal) unexpose(owner string) {
	p.mu.Lock()
	closers := p.owners[owner]
	delete(p.owners, owner)
	p.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
}

func (p *portal) closeAll() {
	p.mu.Lock()
	owners := p.owners
	p.owners = map[string][]io.Closer{}
	p.mu.Unlock()
	for _, cs := range owners {
		for _, c := range cs {
			c.Close()
		}
	}
}

func hostAddr(pf PortForward) string {
	ip := pf.HostIP
	if ip == "0.0.0.0" {
		ip = ""
	}
	return net.JoinHostPort(ip, strconv.Itoa(pf.HostPort))
}

func (p *portal) bind(ctx context.Context, pf PortForward) (io.Closer, error) {
	addr := hostAddr(pf)
	switch pf.Protocol {
	case "tcp":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, bindError(pf, err)
		}
		go p.acceptTCP(ctx, l, pf)
		return l, nil
	case "udp":
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, bindError(pf, err)
		}
		go p.serveUDP(ctx, c, pf)
		return c, nil
	}
	return nil, fmt.Errorf("protocol %q is not forwarded (tcp and udp are)", pf.Protocol)
}

func bindError(pf PortForward, err error) error {
	if errors.Is(err, syscall.EACCES) {
		start := UnprivilegedPortStart()
		return fmt.Errorf("host port %d/%s: binding needs privilege: ports below net.ipv4.ip_unprivileged_port_start (%d on this host) are reserved to root; use a higher port or, as root, `sysctl -w net.ipv4.ip_unprivileged_port_start=%d`", pf.HostPort, pf.Protocol, start, pf.HostPort)
	}
	return fmt.Errorf("host port %s/%s: %w", hostAddr(pf), pf.Protocol, err)
}

// UnprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start as
// this process's namespace shows it; 1024 is the kernel's default when
// the file cannot be read.
func UnprivilegedPortStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 1024
	}
	return n
}

func (p *portal) acceptTCP(ctx context.Context, l net.Listener, pf PortForward) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		p.idler.Begin()
		go func() {
			defer c.Close()
			up, err := dialTarget(ctx, p.targetSock, "tcp", pf.Target)
			// A connection is work until it is set up: a long-lived one
			// (a client of a pod's server) must not keep the trim away.
			p.idler.End()
			if err != nil {
				p.log.Debug("port forward", "port", pf.HostPort, "target", pf.Target, "err", err)
				return
			}
			defer up.Close()
			splice(c, up)
		}()
	}
}

// serveUDP keeps one relay stream per client address; datagrams travel on
// it with a two-byte length prefix.
func (p *portal) serveUDP(ctx context.Context, pc net.PacketConn, pf PortForward) {
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, f := range flows {
				f.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		flow, ok := flows[from.String()]
		if !ok {
			flow, err = dialTarget(ctx, p.targetSock, "udp", pf.Target)
			if err != nil {
				mu.Unlock()
				continue
			}
			flows[from.String()] = flow
			go func(flow net.Conn, from net.Addr) {
				copyFramesToPacketConn(flow, pc, from)
				mu.Lock()
				delete(flows, from.String())
				mu.Unlock()
				flow.Close()
			}(flow, from)
		}
		mu.Unlock()
		writeFrame(flow, buf[:n])
	}
}

func writeFrame(w io.Writer, b []byte) error {
	hdr := make([]byte, 2)
	binary.BigEndian.PutUint16(hdr, uint16(len(b)))
	if _, err := w.Write(append(hdr, b...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader, buf []byte) (int, error) {
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, err
	}
	return n, nil
}

func copyFramesToPacketConn(flow net.Conn, pc net.PacketConn, to net.Addr) {
	buf := make([]byte, maxDatagram)
	for {
		flow.SetReadDeadline(time.Now().Add(udpFlowIdle))
		n, err := readFrame(flow, buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], to)
	}
}

// dialTarget asks the child's target dialer for a connection to target
// inside crib's namespace.
func dialTarget(ctx context.Context, sock, proto, target string) (net.Conn, error) {
	return dialViaRelay(ctx, sock, proto+" "+target)
}

// serveDialRelay dials, from the network namespace it runs in, what each
// connection names ("tcp host:port" or "udp host:port") and relays bytes.
// The child serves it for the portal (dialling inside crib's namespace),
// the parent for the host dialer (dialling from the host's). Each
// connection is work for idler (nil: none counted).
func serveDialRelay(ctx context.Context, l net.Listener, idler *memtrim.Idler, log *slog.Logger) {
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		idler.Begin()
		go func() {
			// Work until the dial is done, not for the relay's lifetime
			// (see acceptTCP).
			var once sync.Once
			dialed := func() { once.Do(idler.End) }
			defer dialed()
			dialForPeer(ctx, c, dialed, log)
		}()
	}
}

// dialForPeer reads the request on c, dials it, calls dialed, and relays.
func dialForPeer(ctx context.Context, c net.Conn, dialed func(), log *slog.Logger) {
	defer c.Close()
	br := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(hostDialTimeout))
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	proto, target, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || (proto != "tcp" && proto != "udp") {
		fmt.Fprintf(c, "ERR bad request %q\n", line)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, hostDialTimeout)
	up, err := (&net.Dialer{}).DialContext(dctx, proto, target)
	cancel()
	dialed()
	if err != nil {
		fmt.Fprintf(c, "ERR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "OK\n"); err != nil {
		return
	}
	conn := &bufferedConn{Conn: c, r: br}
	if proto == "tcp" {
		splice(up, conn)
		return
	}
	relayUDPFlow(conn, up)
}

// relayUDPFlow copies frames from the parent to the connected UDP socket
// and datagrams back as frames, until either side is idle or closes.
func relayUDPFlow(frames net.Conn, udp net.Conn) {
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			udp.SetReadDeadline(time.Now().Add(udpFlowIdle))
			n, err := udp.Read(buf)
			if err != nil {
				frames.Close()
				return
			}
			if writeFrame(frames, buf[:n]) != nil {
				return
			}
		}
	}()
	buf := make([]byte, maxDatagram)
	for {
		frames.SetReadDeadline(time.Now().Add(udpFlowIdle))
		n, err := readFrame(frames, buf)
		if err != nil {
			udp.Close()
			return
		}
		udp.Write(buf[:n])
	}
}

// PortalClient is the child's handle on the parent's portal.
type PortalClient struct {
	controlSock string
}

func (pc *PortalClient) call(ctx context.Context, req controlRequest) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", pc.controlSock)
	if err != nil {
		return fmt.Errorf("reaching crib's parent for host ports: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return err
	}
	var reply controlReply
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		return fmt.Errorf("crib's parent did not answer: %w", err)
	}
	if reply.Error != "" {
		return errors.New(reply.Error)
	}
	return nil
}

// Expose asks the parent to forward ports from the host to targets in
// crib's namespace, all or none.
func (pc *PortalClient) Expose(ctx context.Context, owner string, ports []PortForward) error {
	return pc.call(ctx, controlRequest{Op: "expose", Owner: owner, Ports: ports})
}

// ForwardTCP asks the parent to forward one TCP port of the host to
// target in crib's namespace.
func (pc *PortalClient) ForwardTCP(ctx context.Context, owner, hostIP string, hostPort int, target string) error {
	return pc.Expose(ctx, owner, []PortForward{{Protocol: "tcp", HostIP: hostIP, HostPort: hostPort, Target: target}})
}

// Unexpose releases every port of owner; releasing nothing is not an error.
func (pc *PortalClient) Unexpose(ctx context.Context, owner string) error {
	return pc.call(ctx, controlRequest{Op: "unexpose", Owner: owner})
}
