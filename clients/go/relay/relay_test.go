package relay

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// v4Quote is an IPv4 header (protocol ICMP) and the first 8 bytes of an Echo Request.
func v4Quote(ident, seq uint16) []byte {
	q := make([]byte, 28)
	q[0], q[9] = 0x45, protoICMP
	copy(q[20:], marshalEcho(false, ident, seq, nil))
	return q
}

// v6Quote is an IPv6 header with `ext` extension headers before the Echo Request's first 8 bytes.
func v6Quote(ident, seq uint16, ext ...[]byte) []byte {
	q := make([]byte, 40)
	q[0] = 0x60
	next := byte(protoICMPv6)
	for i := len(ext) - 1; i >= 0; i-- {
		ext[i][0], next = next, map[int]byte{0: 60, 1: 0}[i%2]
	}
	q[6] = next
	for _, e := range ext {
		q = append(q, e...)
	}
	return append(q, marshalEcho(true, ident, seq, nil)...)
}

func errorMessage(typ, code byte, quote []byte) []byte {
	return append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quote...)
}

func TestAnEchoReplyIsMatchedByItsIdentAndSequence(t *testing.T) {
	b := marshalEcho(false, 7, 9, []byte("abc"))
	b[0] = v4EchoReply
	m, ok := parse(b, false)
	if !ok || m != (message{kind: EchoReply, ident: 7, seq: 9}) {
		t.Fatalf("got %+v %v", m, ok)
	}
	b6 := marshalEcho(true, 7, 10, nil)
	b6[0] = v6EchoReply
	if m, ok := parse(b6, true); !ok || m.seq != 10 || m.kind != EchoReply {
		t.Fatalf("v6: got %+v %v", m, ok)
	}
}

func TestAnErrorIsMatchedByTheEchoRequestItQuotes(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		v6   bool
		want ErrorType
	}{
		{"v4 time exceeded", errorMessage(11, 0, v4Quote(1, 2)), false, TimeExceeded},
		{"v4 net unreachable", errorMessage(3, 0, v4Quote(1, 2)), false, NetUnreachable},
		{"v4 host unreachable", errorMessage(3, 1, v4Quote(1, 2)), false, HostUnreachable},
		{"v4 protocol unreachable", errorMessage(3, 2, v4Quote(1, 2)), false, ProtocolUnreachable},
		{"v4 port unreachable", errorMessage(3, 3, v4Quote(1, 2)), false, PortUnreachable},
		{"v4 admin prohibited", errorMessage(3, 13, v4Quote(1, 2)), false, AdminProhibited},
		{"v6 time exceeded", errorMessage(3, 0, v6Quote(1, 2)), true, TimeExceeded},
		{"v6 no route", errorMessage(1, 0, v6Quote(1, 2)), true, NetUnreachable},
		{"v6 address unreachable", errorMessage(1, 3, v6Quote(1, 2)), true, HostUnreachable},
		{"v6 port unreachable", errorMessage(1, 4, v6Quote(1, 2)), true, PortUnreachable},
		{"v6 admin prohibited", errorMessage(1, 1, v6Quote(1, 2)), true, AdminProhibited},
		{"v6 unrecognized next header", errorMessage(4, 1, v6Quote(1, 2)), true, ProtocolUnreachable},
		{"v6 behind extension headers", errorMessage(3, 0, v6Quote(1, 2, make([]byte, 8), make([]byte, 8))), true, TimeExceeded},
	}
	for _, c := range cases {
		m, ok := parse(c.b, c.v6)
		if !ok || m != (message{kind: Error, errorType: c.want, ident: 1, seq: 2}) {
			t.Errorf("%s: got %+v %v", c.name, m, ok)
		}
	}
}

func TestWhatAnswersNoProbeIsIgnored(t *testing.T) {
	request := marshalEcho(false, 1, 2, nil) // an Echo Request, not a reply
	notEcho := v4Quote(1, 2)
	notEcho[20] = 13 // the quote is a Timestamp, not an Echo Request
	udp := v4Quote(1, 2)
	udp[9] = 17
	for name, b := range map[string][]byte{
		"echo request":           request,
		"short":                  {0, 0, 0},
		"reassembly time exceed": errorMessage(11, 1, v4Quote(1, 2)),
		"quote of another type":  errorMessage(11, 0, notEcho),
		"quote of UDP":           errorMessage(11, 0, udp),
		"truncated quote":        errorMessage(11, 0, v4Quote(1, 2)[:24]),
	} {
		if m, ok := parse(b, false); ok {
			t.Errorf("%s: parsed as %+v", name, m)
		}
	}
}

func TestOnlyDestinationsInsideAllowAreRelayed(t *testing.T) {
	r := &Relay{
		cfg:     Config{Allow: []netip.Prefix{netip.MustParsePrefix("198.18.30.0/24")}, Rate: 1, Burst: 5},
		v4:      &socket{},
		buckets: map[netip.Addr]*bucket{},
		now:     time.Now,
	}
	src := netip.MustParseAddr("198.18.0.1")
	if err := r.Check(Probe{Source: src, Destination: netip.MustParseAddr("198.18.30.9")}); err != nil {
		t.Fatalf("inside: %v", err)
	}
	err := r.Check(Probe{Source: src, Destination: netip.MustParseAddr("198.18.31.9")})
	if !errors.Is(err, ErrNotRelayed) {
		t.Fatalf("outside: %v", err)
	}
	err = r.Check(Probe{Source: src, Destination: netip.MustParseAddr("fd00:30::9")})
	if !errors.Is(err, ErrNotRelayed) {
		t.Fatalf("other family outside: %v", err)
	}
}

func TestEachSourceGetsItsOwnTokenBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	r := &Relay{
		cfg:     Config{Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Rate: 2, Burst: 3},
		v4:      &socket{},
		buckets: map[netip.Addr]*bucket{},
		now:     func() time.Time { return now },
	}
	dst := netip.MustParseAddr("198.18.30.9")
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.3")
	ok := func(src netip.Addr) bool { return r.Check(Probe{Source: src, Destination: dst}) == nil }
	got := []bool{ok(a), ok(a), ok(a), ok(a), ok(b)}
	if want := []bool{true, true, true, false, true}; !equal(got, want) {
		t.Fatalf("burst: got %v want %v", got, want)
	}
	now = now.Add(500 * time.Millisecond) // 2 per second: one token back
	if got := []bool{ok(a), ok(a)}; !equal(got, []bool{true, false}) {
		t.Fatalf("refill: got %v", got)
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAnIPv4EchoRequestCarriesAValidChecksum(t *testing.T) {
	b := marshalEcho(false, 0x1234, 0x0102, []byte("payload!"))
	if checksum(b) != 0 {
		t.Fatalf("checksum over the message with its checksum is %#x, want 0", checksum(b))
	}
}
