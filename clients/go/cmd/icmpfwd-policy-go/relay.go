package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	client "github.com/icmpfwd/client-go"
	"github.com/icmpfwd/client-go/relay"
)

// prefixesFlag is a prefix list flag: comma-separated, repeatable.
type prefixesFlag struct{ v *[]netip.Prefix }

func (f prefixesFlag) String() string {
	if f.v == nil {
		return ""
	}
	s := make([]string, len(*f.v))
	for i, p := range *f.v {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (f prefixesFlag) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("not a prefix: %q", part)
		}
		*f.v = append(*f.v, p.Masked())
	}
	return nil
}

// relayCounts is what the relay policy adds to the summary line.
type relayCounts struct {
	relayed, replies, errors, silent, refused atomic.Uint64
}

// The relay's error types are the service's (both follow SyntheticErrorType).
var errorTypes = map[relay.ErrorType]client.ErrorType{
	relay.TimeExceeded:        client.TimeExceeded,
	relay.NetUnreachable:      client.NetUnreachable,
	relay.HostUnreachable:     client.HostUnreachable,
	relay.ProtocolUnreachable: client.ProtocolUnreachable,
	relay.PortUnreachable:     client.PortUnreachable,
	relay.AdminProhibited:     client.AdminProhibited,
}

// newRelayPolicy: consume each request for an --allow destination the service does not own,
// send it on from this host (relay package), and answer with what came back — the Echo Reply
// after the real round trip, a router's error from that router, or nothing within the budget.
// Anything else falls through. Raw sockets when the process may open them (CAP_NET_RAW), else
// datagram ping sockets (no router errors).
func newRelayPolicy(c config, log client.Logger) (policy, func(), error) {
	cfg := relay.Config{
		Allow:      c.allow,
		Rate:       c.rate,
		Burst:      c.burst,
		Budget:     time.Duration(c.relayBudgetMs) * time.Millisecond,
		Privileged: !c.unprivileged,
	}
	r, err := relay.New(cfg)
	if err != nil && cfg.Privileged {
		log(client.LevelWarn, "no raw ICMP socket ("+err.Error()+"): relaying with datagram ping sockets, which see no router errors", nil)
		cfg.Privileged = false
		r, err = relay.New(cfg)
	}
	if err != nil {
		return policy{}, nil, err
	}
	n := &relayCounts{}
	handler := func(req *client.Request) client.Verdict {
		fields := client.Fields{"request_id": req.ID, "trace_id": req.TraceID}
		// A destination the service owns is its own to answer: never relayed.
		if !req.Temporary {
			return client.Fallthrough
		}
		probe := relay.Probe{Source: req.Source, Destination: req.Destination, TTL: req.TTL, Payload: fullPayload(req)}
		if err := r.Check(probe); err != nil {
			n.refused.Add(1)
			log(client.LevelDebug, err.Error(), fields)
			return client.Fallthrough
		}
		n.relayed.Add(1)
		return client.Verdict{Action: client.ActionConsume, Synthetic: &client.Synthetic{Await: func() *client.Synthetic {
			a, err := r.Send(context.Background(), probe)
			if err != nil && !errors.Is(err, context.Canceled) {
				log(client.LevelWarn, "relay: "+err.Error(), fields)
			}
			switch a.Kind {
			case relay.EchoReply:
				n.replies.Add(1)
				return &client.Synthetic{}
			case relay.Error:
				n.errors.Add(1)
				return &client.Synthetic{Error: &client.SyntheticError{Type: errorTypes[a.Error], Source: a.From}}
			}
			n.silent.Add(1)
			return nil
		}}}
	}
	return policy{handler: handler, payloadBytes: relayPayloadBytes, relay: n}, r.Close, nil
}

// relayPayloadBytes: the events carry the whole payload of any ordinary ping.
const relayPayloadBytes = 65535

// fullPayload is the request's payload at its full length (zeros past what the event carried).
func fullPayload(req *client.Request) []byte {
	if len(req.Payload) >= req.PayloadLength {
		return req.Payload
	}
	p := make([]byte, req.PayloadLength)
	copy(p, req.Payload)
	return p
}

func (n *relayCounts) String() string {
	return fmt.Sprintf(" relayed=%d relay_replies=%d relay_errors=%d relay_silent=%d relay_refused=%d",
		n.relayed.Load(), n.replies.Load(), n.errors.Load(), n.silent.Load(), n.refused.Load())
}
