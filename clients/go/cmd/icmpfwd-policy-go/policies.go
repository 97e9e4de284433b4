package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	client "github.com/icmpfwd/client-go"
)

// policy is one example policy, ready to run.
type policy struct {
	handler      client.Handler
	mode         client.Mode
	payloadBytes uint32
	// meter is proxy-latency --measure's RTT meter (nil otherwise).
	meter *rttMeter
	// relay is the relay policy's counts (nil otherwise).
	relay *relayCounts
}

// extra is what the summary line adds for the policy (--measure's ping counters).
func (p policy) extra() string {
	if p.relay != nil {
		return p.relay.String()
	}
	if p.meter == nil {
		return ""
	}
	s := p.meter.snapshot()
	return fmt.Sprintf(" pings=%d shared=%d ping_failures=%d loops=%d", s.pings, s.shared, s.failures, s.loops)
}

func newPolicy(c config, log client.Logger) policy {
	switch c.policy {
	case "reply-all":
		return policy{handler: func(*client.Request) client.Verdict { return client.Reply }}
	case "drop-all":
		return policy{handler: func(*client.Request) client.Verdict { return client.Consume }}
	case "even-reply":
		return policy{handler: evenReply}
	case "every-nth":
		return policy{handler: everyNth(c.n)}
	case "per-source-rate-limit":
		return policy{handler: perSourceRateLimit(c.rate, c.burst, time.Now)}
	case "proxy-latency":
		delay := time.Duration(c.delayMs) * time.Millisecond
		if !c.measure {
			return policy{handler: func(*client.Request) client.Verdict { return client.SyntheticReply(delay, nil) }}
		}
		m := newRTTMeter(time.Duration(c.rttCacheMs)*time.Millisecond, int(c.maxPings), log, systemPing)
		return policy{handler: proxyMeasured(delay, m, time.Now), payloadBytes: measurePayloadBytes, meter: m}
	}
	// observe-log: copies only; one line per request.
	return policy{mode: client.Observe, handler: func(req *client.Request) client.Verdict {
		log(client.LevelInfo, fmt.Sprintf("observed %s ttl=%d len=%d", req, req.TTL, req.PayloadLength),
			client.Fields{"request_id": req.ID, "trace_id": req.TraceID})
		return client.Fallthrough
	}}
}

// evenReply answers even sequence numbers and consumes odd ones.
func evenReply(req *client.Request) client.Verdict {
	if req.Sequence%2 == 0 {
		return client.Reply
	}
	return client.Consume
}

// everyNth replies to every nth request (by arrival) and consumes the rest.
func everyNth(n uint64) client.Handler {
	var seen atomic.Uint64
	return func(*client.Request) client.Verdict {
		if seen.Add(1)%n == 0 {
			return client.Reply
		}
		return client.Consume
	}
}

// maxBuckets bounds the per-source table (the oldest source is forgotten first).
const maxBuckets = 65536

// perSourceRateLimit replies while the request's source has a token (a bucket per source
// address: burst tokens, refilled at rate per second), else consumes.
func perSourceRateLimit(rate, burst float64, now func() time.Time) client.Handler {
	type bucket struct {
		tokens float64
		at     time.Time
	}
	var mu sync.Mutex
	buckets := map[string]*bucket{}
	var order []string
	return func(req *client.Request) client.Verdict {
		mu.Lock()
		defer mu.Unlock()
		t := now()
		key := req.Source.String()
		b, ok := buckets[key]
		if !ok {
			b = &bucket{tokens: burst, at: t}
			buckets[key] = b
			order = append(order, key)
			if len(order) > maxBuckets {
				delete(buckets, order[0])
				order = order[1:]
			}
		}
		b.tokens = minFloat(burst, b.tokens+t.Sub(b.at).Seconds()*rate)
		b.at = t
		if b.tokens >= 1 {
			b.tokens--
			return client.Reply
		}
		return client.Consume
	}
}

func minFloat(a, b float64) float64 {
	if a < b {
		return a
	}
	return b
}

// proxyMeasured consumes, then a synthetic reply one RTT (as this host's ping measures it to the
// destination) after the request, or after fallback when the measurement fails. Its own looped
// measurement pings get the built-in reply.
func proxyMeasured(fallback time.Duration, m *rttMeter, now func() time.Time) client.Handler {
	return func(req *client.Request) client.Verdict {
		if isMeasurementPing(req.Payload) {
			m.looped(req.Destination.String())
			return client.Reply
		}
		t0 := now()
		dst := req.Destination
		v := client.SyntheticReply(0, nil)
		v.Synthetic.DelayFunc = func() time.Duration {
			rtt, ok := m.measure(dst)
			if !ok {
				rtt = fallback
			}
			if d := rtt - now().Sub(t0); d > 0 {
				return d
			}
			return 0
		}
		return v
	}
}
