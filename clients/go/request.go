package client

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	pb "github.com/icmpfwd/client-go/icmpfwdv1"
)

// Family is a request's address family.
type Family int

const (
	// AnyFamily in a Filter matches both families.
	AnyFamily Family = 0
	IPv4      Family = 4
	IPv6      Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "any"
}

// Request is one Echo Request the service's netstack received.
type Request struct {
	ID     uint64
	Family Family
	// NIC is the netstack NIC it arrived on.
	NIC         uint32
	Source      netip.Addr
	Destination netip.Addr
	Ident       uint16
	Sequence    uint16
	// TTL is the IPv4 TTL or IPv6 hop limit as received.
	TTL uint8
	// TOS is the IPv4 TOS or IPv6 traffic class.
	TOS uint8
	// Temporary: the destination is a temporary address (a promiscuous NIC).
	Temporary bool
	// Payload holds the first Options.PayloadBytes bytes of the ICMP payload (none by default).
	Payload []byte
	// PayloadLength is the full ICMP payload length.
	PayloadLength int
	// ReceivedAt and Deadline are server times (zero when the service did not say).
	ReceivedAt time.Time
	Deadline   time.Time
	// Budget is how long the service waited for the verdict when it sent the request (clocks
	// differ between hosts; this does not).
	Budget time.Duration
	// Traceparent is the W3C trace context of the request's span, when the service traces.
	Traceparent string
	// TraceID is the trace id of Traceparent, or "".
	TraceID string
}

var traceparentRE = regexp.MustCompile(`^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$`)

// TraceIDOf returns the trace id of a W3C traceparent (version-traceid-spanid-flags), or "".
func TraceIDOf(traceparent string) string {
	m := traceparentRE.FindStringSubmatch(strings.TrimSpace(traceparent))
	if m == nil || m[1] == strings.Repeat("0", 32) {
		return ""
	}
	return m[1]
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

// FromProto converts a wire EchoRequest.
func FromProto(e *pb.EchoRequest) *Request {
	r := &Request{
		ID:            e.GetRequestId(),
		Family:        IPv4,
		NIC:           e.GetNic(),
		Source:        addrOf(e.GetSource()),
		Destination:   addrOf(e.GetDestination()),
		Ident:         uint16(e.GetIdent()),
		Sequence:      uint16(e.GetSequence()),
		TTL:           uint8(e.GetTtl()),
		TOS:           uint8(e.GetTos()),
		Temporary:     e.GetLocalAddressTemporary(),
		Payload:       e.GetPayload(),
		PayloadLength: int(e.GetPayloadLength()),
		Traceparent:   e.GetTraceparent(),
		TraceID:       TraceIDOf(e.GetTraceparent()),
	}
	if e.GetFamily() == pb.Family_FAMILY_IPV6 {
		r.Family = IPv6
	}
	if t := e.GetReceivedAt(); t != nil {
		r.ReceivedAt = t.AsTime()
	}
	if t := e.GetDeadline(); t != nil {
		r.Deadline = t.AsTime()
	}
	if d := e.GetBudget(); d != nil {
		r.Budget = d.AsDuration()
	}
	return r
}

// String describes the request for a log line, with its trace id when it has one.
func (r *Request) String() string {
	s := fmt.Sprintf("request=%d %s > %s ident=%d seq=%d", r.ID, r.Source, r.Destination, r.Ident, r.Sequence)
	if r.TraceID != "" {
		s += " trace_id=" + r.TraceID
	}
	return s
}

// Action is what the service does with a request.
type Action int

const (
	// invalid is the zero Verdict's action: the request falls through and an error is logged.
	invalid Action = iota
	// ActionReply: the service runs the netstack's built-in Echo Reply.
	ActionReply
	// ActionConsume: the request is dropped; no built-in reply.
	ActionConsume
	// ActionFallthrough: the netstack's fallback runs (the built-in reply, except for IPv4
	// temporary addresses).
	ActionFallthrough
)

func (a Action) String() string {
	switch a {
	case ActionReply:
		return "reply"
	case ActionConsume:
		return "consume"
	case ActionFallthrough:
		return "fallthrough"
	}
	return "invalid"
}

func (a Action) wire() pb.Action {
	switch a {
	case ActionReply:
		return pb.Action_ACTION_REPLY
	case ActionConsume:
		return pb.Action_ACTION_CONSUME
	}
	return pb.Action_ACTION_FALLTHROUGH
}

// Verdict is a handler's answer. Use Reply, Consume, Fallthrough or SyntheticReply, optionally
// with WithFlow. The zero Verdict is not an answer: the request falls through and an error is
// logged.
type Verdict struct {
	Action Action
	// FlowMs > 0: the service applies the same action to the request's flow (source,
	// destination, ident) for this many milliseconds without asking.
	FlowMs uint32
	// Synthetic, with ActionConsume: send a SyntheticReply for the request later.
	Synthetic *Synthetic
}

// Synthetic is a proxy-owned reply sent after a consume verdict.
type Synthetic struct {
	// Delay after the verdict (within the service's synthetic-reply window, 10 s by default).
	Delay time.Duration
	// Payload replaces the request's payload when non-nil.
	Payload []byte
	// DelayFunc, when set, is called (on its own goroutine) for the delay instead, which then
	// counts from its return — a delay that must be measured first.
	DelayFunc func() time.Duration
	// Error, when set, asks for this ICMP error instead of the Echo Reply (Payload must be nil).
	Error *SyntheticError
	// Await, when set, is called (on its own goroutine) instead of all of the above and says what
	// to send as soon as it returns — nil: nothing (the request stays consumed). A relay uses it
	// to answer with what the real destination (or a router on the way) answered.
	Await func() *Synthetic
}

// ErrorType is the ICMP error a SyntheticError sends (the service's SyntheticErrorType).
type ErrorType int

const (
	TimeExceeded        ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_TIME_EXCEEDED)
	NetUnreachable      ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_NET_UNREACHABLE)
	HostUnreachable     ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_HOST_UNREACHABLE)
	ProtocolUnreachable ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_PROTOCOL_UNREACHABLE)
	PortUnreachable     ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_PORT_UNREACHABLE)
	AdminProhibited     ErrorType = ErrorType(pb.SyntheticErrorType_SYNTHETIC_ERROR_TYPE_ADMIN_PROHIBITED)
)

// SyntheticError is an ICMP error about a consumed request, from a router's address (Time
// Exceeded shows that router as a hop in traceroute).
type SyntheticError struct {
	Type ErrorType
	// Source is the router's address: unicast, of the request's family, not the service's own.
	Source netip.Addr
}

var (
	// Reply: the service sends the netstack's built-in Echo Reply.
	Reply = Verdict{Action: ActionReply}
	// Consume: the request is dropped.
	Consume = Verdict{Action: ActionConsume}
	// Fallthrough: the netstack's default runs.
	Fallthrough = Verdict{Action: ActionFallthrough}
)

// WithFlow applies the verdict to the request's whole flow for d (rounded down to milliseconds).
func (v Verdict) WithFlow(d time.Duration) Verdict {
	v.FlowMs = uint32(d / time.Millisecond)
	return v
}

// SyntheticReply consumes the request now and has the service send an Echo Reply for it after
// delay, with payload in place of the request's (nil keeps it) — a proxy reporting upstream
// latency.
func SyntheticReply(delay time.Duration, payload []byte) Verdict {
	return Verdict{Action: ActionConsume, Synthetic: &Synthetic{Delay: delay, Payload: payload}}
}
