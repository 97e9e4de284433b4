package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"

	client "github.com/icmpfwd/client-go"
)

// measurementMarker is in every measurement ping's payload (ping -p): a looped measurement is
// recognised by it. The same 16 bytes as the TypeScript and Python clients.
var measurementMarker = []byte("icmpfwd rtt ping")

// measurePayloadBytes is the Hello.payload_bytes --measure asks for: enough to hold the marker.
const measurePayloadBytes = 64

// maxQueued pings wait for a slot; past that a request gets the fallback at once.
const maxQueued = 256

func isMeasurementPing(payload []byte) bool { return bytes.Contains(payload, measurementMarker) }

// pingRunner runs ping with args: its exit error and output.
type pingRunner func(args []string) (string, error)

func systemPing(args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ping", args...).CombinedOutput()
	return string(out), err
}

var pingTime = regexp.MustCompile(`time[=<]\s*([\d.]+)\s*ms`)

// parsePingRTT is the round trip `ping -c 1` printed.
func parsePingRTT(out string) (time.Duration, bool) {
	m := pingTime.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	ms, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

type rttStats struct{ pings, shared, failures, loops uint64 }

type rttResult struct {
	rtt  time.Duration
	ok   bool
	at   time.Time
	done chan struct{}
}

// rttMeter measures the RTT to a destination with the system ping: one measurement per
// destination at a time, results (and failures) cached for cacheFor, at most maxPings at once.
type rttMeter struct {
	cacheFor time.Duration
	slots    chan struct{}
	log      client.Logger
	ping     pingRunner
	mu       sync.Mutex
	results  map[string]*rttResult
	queued   int
	loopedTo map[string]bool
	stats    rttStats
}

func newRTTMeter(cacheFor time.Duration, maxPings int, log client.Logger, ping pingRunner) *rttMeter {
	return &rttMeter{
		cacheFor: cacheFor, slots: make(chan struct{}, maxPings), log: log, ping: ping,
		results: map[string]*rttResult{}, loopedTo: map[string]bool{},
	}
}

func (m *rttMeter) snapshot() rttStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// looped records that the measurement ping to dst came back through icmpfwd itself.
func (m *rttMeter) looped(dst string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loopedTo[dst] = true
}

func pingArgs(dst netip.Addr) []string {
	family := "-4"
	if dst.Is6() && !dst.Is4In6() {
		family = "-6"
	}
	return []string{family, "-c", "1", "-n", "-W", "1", "-p", hex.EncodeToString(measurementMarker), dst.String()}
}

// measure is the RTT to dst (false: the measurement failed, or too many are waiting).
func (m *rttMeter) measure(dst netip.Addr) (time.Duration, bool) {
	key := dst.String()
	m.mu.Lock()
	if r, ok := m.results[key]; ok && (r.at.IsZero() || time.Since(r.at) < m.cacheFor) {
		m.stats.shared++
		m.mu.Unlock()
		<-r.done
		return r.rtt, r.ok
	}
	if m.queued >= maxQueued+cap(m.slots) {
		m.mu.Unlock()
		return 0, false
	}
	r := &rttResult{done: make(chan struct{})}
	m.results[key] = r
	m.queued++
	m.stats.pings++
	m.mu.Unlock()

	m.slots <- struct{}{}
	out, err := m.ping(pingArgs(dst))
	<-m.slots
	rtt, ok := parsePingRTT(out)
	m.mu.Lock()
	m.queued--
	looped := m.loopedTo[key]
	delete(m.loopedTo, key)
	r.rtt, r.ok, r.at = rtt, ok && err == nil && !looped, time.Now()
	if !r.ok {
		m.stats.failures++
	}
	if looped {
		m.stats.loops++
		m.stats.failures--
	}
	m.mu.Unlock()
	close(r.done)
	switch {
	case looped:
		m.log(client.LevelWarn, fmt.Sprintf("the measurement ping to %s went through icmpfwd itself (a routing loop); using the fixed delay", key), nil)
	case !r.ok:
		m.log(client.LevelWarn, fmt.Sprintf("measurement ping to %s failed; using the fixed delay: %v %s", key, err, bytes.TrimSpace([]byte(out))), nil)
	default:
		m.log(client.LevelInfo, fmt.Sprintf("measured rtt to %s: %.3f ms", key, float64(rtt)/float64(time.Millisecond)), nil)
	}
	return r.rtt, r.ok
}
