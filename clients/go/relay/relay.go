// Package relay sends a consumed Echo Request on to its real destination from this host and
// reports what came back: the Echo Reply (after the real round trip), the ICMP error a router on
// the way sent (Time Exceeded, Destination Unreachable — what traceroute needs), or nothing
// within the budget. A policy client at a tunnel's exit turns that into a synthetic answer.
//
// Each probe goes out with the request's TTL / hop limit and payload but an ident and sequence
// of the relay's own; answers are mapped back by them (an error by the Echo header it quotes).
// With CAP_NET_RAW the relay uses raw ICMP sockets and sees errors; without, the kernel's
// unprivileged ICMP datagram sockets (net.ipv4.ping_group_range), which deliver Echo Replies
// only. It relays only to destinations inside Config.Allow (no open relay), at most Config.Rate
// probes per second per request source.
package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/icmp"
)

// Kind is what came back for a probe.
type Kind int

const (
	// Nothing came back within the budget.
	Nothing Kind = iota
	// EchoReply: the destination answered.
	EchoReply
	// Error: a router (or the destination) sent an ICMP error; see Answer.Error and Answer.From.
	Error
)

// ErrorType is the ICMP error a router sent, in the service's SyntheticErrorType terms.
type ErrorType int

const (
	TimeExceeded ErrorType = iota + 1
	NetUnreachable
	HostUnreachable
	ProtocolUnreachable
	PortUnreachable
	AdminProhibited
)

func (t ErrorType) String() string {
	switch t {
	case TimeExceeded:
		return "time-exceeded"
	case NetUnreachable:
		return "net-unreachable"
	case HostUnreachable:
		return "host-unreachable"
	case ProtocolUnreachable:
		return "protocol-unreachable"
	case PortUnreachable:
		return "port-unreachable"
	case AdminProhibited:
		return "admin-prohibited"
	}
	return fmt.Sprintf("error-type-%d", int(t))
}

// Answer is what came back for one probe.
type Answer struct {
	Kind Kind
	// Error and From, for Kind Error: the error's type and the router that sent it.
	Error ErrorType
	From  netip.Addr
	// RTT from sending the probe to the answer.
	RTT time.Duration
}

// Probe is one Echo Request to relay.
type Probe struct {
	// Source is the request's source (the rate limit's key); Destination where the probe goes.
	Source      netip.Addr
	Destination netip.Addr
	// TTL is the request's TTL / hop limit: the probe leaves with it.
	TTL     uint8
	Payload []byte
}

// Config says where the relay may send and how fast.
type Config struct {
	// Allow: the only destinations probes may go to. Required (empty: nothing is relayed).
	Allow []netip.Prefix
	// Rate and Burst: a token bucket per request source (probes per second, bucket size).
	Rate  float64
	Burst float64
	// Budget: how long to wait for an answer (keep it inside the service's synthetic window).
	Budget time.Duration
	// Privileged: raw ICMP sockets (errors are seen; needs CAP_NET_RAW). Otherwise unprivileged
	// ICMP datagram sockets (Echo Replies only).
	Privileged bool
}

// ErrNotRelayed is wrapped by Check's refusals: the probe is not sent.
var ErrNotRelayed = errors.New("not relayed")

// Relay owns the sockets and the probes in flight.
type Relay struct {
	cfg    Config
	ident  uint16
	v4, v6 *socket

	mu      sync.Mutex
	seq     uint16
	pending map[key]*waiter
	buckets map[netip.Addr]*bucket
	now     func() time.Time
}

type key struct {
	v6  bool
	seq uint16
}

type waiter struct {
	sent time.Time
	ch   chan Answer
}

// New opens the relay's sockets (IPv4 and IPv6; a family whose socket cannot be opened is
// refused per probe) and starts reading them.
func New(cfg Config) (*Relay, error) {
	if len(cfg.Allow) == 0 {
		return nil, errors.New("relay: Config.Allow is required (no open relay)")
	}
	if cfg.Budget <= 0 {
		return nil, errors.New("relay: Config.Budget must be positive")
	}
	r := &Relay{
		cfg:     cfg,
		ident:   uint16(rand.Intn(1 << 16)),
		pending: map[key]*waiter{},
		buckets: map[netip.Addr]*bucket{},
		now:     time.Now,
	}
	var errs []string
	for _, v6 := range []bool{false, true} {
		s, err := openSocket(v6, cfg.Privileged)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if v6 {
			r.v6 = s
		} else {
			r.v4 = s
		}
		go r.read(s)
	}
	if r.v4 == nil && r.v6 == nil {
		return nil, fmt.Errorf("relay: no ICMP socket: %s", strings.Join(errs, "; "))
	}
	return r, nil
}

// Close closes the sockets; probes waiting get Nothing.
func (r *Relay) Close() {
	for _, s := range []*socket{r.v4, r.v6} {
		if s != nil {
			s.conn.Close()
		}
	}
}

// Check says whether p may be relayed now (allow list, rate limit, a socket for its family); a
// refusal wraps ErrNotRelayed. It takes a token from the source's bucket when it says yes.
func (r *Relay) Check(p Probe) error {
	if !r.allowed(p.Destination) {
		return fmt.Errorf("%w: %s is outside --allow", ErrNotRelayed, p.Destination)
	}
	if r.socketFor(p.Destination) == nil {
		return fmt.Errorf("%w: no ICMP socket for %s", ErrNotRelayed, p.Destination)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[p.Source]
	if b == nil {
		b = &bucket{tokens: r.cfg.Burst, at: r.now()}
		r.buckets[p.Source] = b
	}
	if !b.take(r.now(), r.cfg.Rate, r.cfg.Burst) {
		return fmt.Errorf("%w: %s is over the rate limit", ErrNotRelayed, p.Source)
	}
	return nil
}

func (r *Relay) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (r *Relay) socketFor(a netip.Addr) *socket {
	if a.Unmap().Is4() {
		return r.v4
	}
	return r.v6
}

// Send relays p (call Check first) and waits for what comes back, at most the budget or ctx.
func (r *Relay) Send(ctx context.Context, p Probe) (Answer, error) {
	s := r.socketFor(p.Destination)
	if s == nil {
		return Answer{}, fmt.Errorf("%w: no ICMP socket for %s", ErrNotRelayed, p.Destination)
	}
	w := &waiter{ch: make(chan Answer, 1)}
	r.mu.Lock()
	var k key
	for i := 0; ; i++ {
		r.seq++
		k = key{v6: s.v6, seq: r.seq}
		if _, busy := r.pending[k]; !busy {
			break
		}
		if i == 1<<16 {
			r.mu.Unlock()
			return Answer{}, errors.New("relay: 65,536 probes in flight")
		}
	}
	w.sent = r.now()
	r.pending[k] = w
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.pending, k)
		r.mu.Unlock()
	}()
	if err := s.send(p, r.ident, k.seq); err != nil {
		return Answer{}, err
	}
	t := time.NewTimer(r.cfg.Budget)
	defer t.Stop()
	select {
	case a := <-w.ch:
		return a, nil
	case <-t.C:
		return Answer{Kind: Nothing}, nil
	case <-ctx.Done():
		return Answer{Kind: Nothing}, ctx.Err()
	}
}

// read delivers what a socket receives to the waiting probes until the socket closes.
func (r *Relay) read(s *socket) {
	buf := make([]byte, 65536)
	for {
		n, peer, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, ok := parse(buf[:n], s.v6)
		// A datagram socket's replies were matched to it by the kernel, which rewrote the ident.
		if !ok || (s.privileged && m.ident != r.ident) {
			continue
		}
		from, ok := addrOf(peer)
		if !ok {
			continue
		}
		r.mu.Lock()
		w := r.pending[key{v6: s.v6, seq: m.seq}]
		r.mu.Unlock()
		if w == nil {
			continue
		}
		a := Answer{Kind: m.kind, Error: m.errorType, RTT: r.now().Sub(w.sent)}
		if m.kind == Error {
			a.From = from
		}
		select {
		case w.ch <- a:
		default: // answered already (a duplicate)
		}
	}
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	switch v := a.(type) {
	case *net.IPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ip.Unmap(), ok
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// bucket is a token bucket: Rate tokens a second, at most Burst.
type bucket struct {
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.tokens += now.Sub(b.at).Seconds() * rate
	if b.tokens > burst {
		b.tokens = burst
	}
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// socket is one family's ICMP endpoint.
type socket struct {
	conn       *icmp.PacketConn
	v6         bool
	privileged bool
	// Setting the TTL and writing are one step: probes with different TTLs must not interleave.
	mu sync.Mutex
}

func openSocket(v6, privileged bool) (*socket, error) {
	network, address := "udp4", "0.0.0.0"
	switch {
	case v6 && privileged:
		network, address = "ip6:ipv6-icmp", "::"
	case v6:
		network, address = "udp6", "::"
	case privileged:
		network = "ip4:icmp"
	}
	c, err := icmp.ListenPacket(network, address)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", network, err)
	}
	return &socket{conn: c, v6: v6, privileged: privileged}, nil
}

func (s *socket) send(p Probe, ident, seq uint16) error {
	b := marshalEcho(s.v6, ident, seq, p.Payload)
	ip := p.Destination.Unmap().AsSlice()
	var dst net.Addr = &net.IPAddr{IP: ip}
	if !s.privileged {
		dst = &net.UDPAddr{IP: ip}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl := int(p.TTL)
	if ttl == 0 {
		ttl = 64
	}
	var err error
	if s.v6 {
		err = s.conn.IPv6PacketConn().SetHopLimit(ttl)
	} else {
		err = s.conn.IPv4PacketConn().SetTTL(ttl)
	}
	if err != nil {
		return fmt.Errorf("relay: set TTL %d: %w", ttl, err)
	}
	_, err = s.conn.WriteTo(b, dst)
	return err
}
