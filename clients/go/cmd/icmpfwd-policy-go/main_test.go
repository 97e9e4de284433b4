package main

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"strings"
	"testing"
	"time"

	client "github.com/icmpfwd/client-go"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestParseTakesBothSpellingsBeforeAndAfterThePolicy(t *testing.T) {
	c, err := parse([]string{"-v", "--n=3", "every-nth", "--target", "unix:/run/s.sock", "--token=t0k", "--resolve-interval-ms", "1000"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.policy != "every-nth" || c.n != 3 || c.target != "unix:/run/s.sock" || c.token != "t0k" || !c.verbose ||
		c.name != "icmpfwd-policy/every-nth" || c.resolveInterval() != time.Second {
		t.Fatalf("%+v", c)
	}
}

func TestDefaultsAndEnvironment(t *testing.T) {
	c, err := parse([]string{"reply-all"}, env(map[string]string{"ICMPFWD_TARGET": "127.0.0.9:1", "ICMPFWD_TOKEN": "t0k"}))
	if err != nil || c.target != "127.0.0.9:1" || c.token != "t0k" {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = parse([]string{"reply-all"}, env(nil))
	if err != nil || c.target != "127.0.0.1:50051" || c.token != "" || c.n != 2 || c.delayMs != 100 ||
		c.resolveInterval() != 30*time.Second || c.rate != 1 || c.burst != 5 {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestUsageErrorsAreOneLineAndExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"reply-none"}, `unknown policy "reply-none"`},
		{[]string{"reply-all", "--bogus"}, "flag provided but not defined: --bogus"},
		{[]string{"every-nth", "3"}, `unexpected argument "3" after the policy "every-nth"`},
		{[]string{"every-nth", "--n", "0"}, `invalid value "0" for flag --n: below 1`},
		{[]string{"every-nth", "--n=x"}, `invalid value "x" for flag --n: not an integer`},
		{[]string{"reply-all", "--family", "ipv5"}, `invalid value "ipv5" for flag --family: want ipv4 or ipv6`},
		{[]string{"reply-all", "--target", "a:b"}, `invalid value "a:b" for flag --target: bad target "a:b": bad port "b"`},
		{[]string{"reply-all", "--resolve-interval-ms=999"}, "below 1000"},
		{[]string{"reply-all", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{}, "no policy"},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "icmpfwd-policy-go: ") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: stderr %q, want one line with %q", tc.args, errOut.String(), tc.want)
		}
	}
}

func TestHelpListsEveryFlagAndExits0(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	for _, f := range []string{"--target", "--token", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name", "--name",
		"--family", "--max-in-flight", "--n", "--rate", "--burst", "--delay-ms", "--measure", "--resolve-interval-ms"} {
		if !strings.Contains(out.String(), "  "+f+"\n") {
			t.Errorf("--help lacks %s", f)
		}
	}
	if _, err := parse([]string{"-h"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
}

func TestAnUnreadableTLSFileExits1(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"reply-all", "--tls-ca", "/nonexistent/ca.pem"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(errOut.String(), `"level":"error","msg":"cannot read the TLS files: open /nonexistent/ca.pem`) {
		t.Fatal(errOut.String())
	}
}

func req(seq uint16, src string) *client.Request {
	return &client.Request{Sequence: seq, Source: netip.MustParseAddr(src), Destination: netip.MustParseAddr("198.18.0.2")}
}

func TestPolicies(t *testing.T) {
	want := map[string][4]client.Action{ // sequences 1..4
		"reply-all":  {client.ActionReply, client.ActionReply, client.ActionReply, client.ActionReply},
		"drop-all":   {client.ActionConsume, client.ActionConsume, client.ActionConsume, client.ActionConsume},
		"even-reply": {client.ActionConsume, client.ActionReply, client.ActionConsume, client.ActionReply},
		"every-nth":  {client.ActionConsume, client.ActionConsume, client.ActionReply, client.ActionConsume},
	}
	for name, w := range want {
		p := newPolicy(config{policy: name, n: 3}, func(client.Level, string, client.Fields) {})
		for i := range w {
			if a := p.handler(req(uint16(i+1), "198.18.0.1")).Action; a != w[i] {
				t.Errorf("%s seq=%d: %v", name, i+1, a)
			}
		}
	}
	p := newPolicy(config{policy: "proxy-latency", delayMs: 150}, nil)
	if v := p.handler(req(1, "198.18.0.1")); v.Action != client.ActionConsume || v.Synthetic == nil || v.Synthetic.Delay != 150*time.Millisecond {
		t.Fatalf("proxy-latency: %+v", v)
	}
	if p := newPolicy(config{policy: "observe-log"}, nil); p.mode != client.Observe {
		t.Fatal("observe-log is not an observer")
	}
}

func TestPerSourceRateLimitRefillsPerSource(t *testing.T) {
	now := time.Unix(0, 0)
	h := perSourceRateLimit(2, 3, func() time.Time { return now })
	got := func(src string, n int) (s string) {
		for i := 0; i < n; i++ {
			s += h(req(1, src)).Action.String()[:1]
		}
		return s
	}
	if g := got("198.18.0.1", 4) + "," + got("198.18.0.3", 4); g != "rrrc,rrrc" {
		t.Fatal(g)
	}
	now = now.Add(500 * time.Millisecond) // one token back
	if g := got("198.18.0.1", 2); g != "rc" {
		t.Fatal(g)
	}
}

func TestMeasuredProxyLatency(t *testing.T) {
	var pings [][]string
	m := newRTTMeter(time.Second, 4, func(client.Level, string, client.Fields) {}, func(args []string) (string, error) {
		pings = append(pings, args)
		return "64 bytes from 198.18.0.2: icmp_seq=1 ttl=64 time=40.0 ms\n", nil
	})
	h := proxyMeasured(500*time.Millisecond, m, time.Now)
	v := h(req(1, "198.18.0.1"))
	if v.Action != client.ActionConsume || v.Synthetic == nil || v.Synthetic.DelayFunc == nil {
		t.Fatalf("%+v", v)
	}
	if d := v.Synthetic.DelayFunc(); d <= 30*time.Millisecond || d > 40*time.Millisecond {
		t.Fatalf("delay %v, want just under 40ms", d)
	}
	if len(pings) != 1 || strings.Join(pings[0], " ") != "-4 -c 1 -n -W 1 -p 69636d70667764207274742070696e67 198.18.0.2" {
		t.Fatalf("ping args %v", pings)
	}
	// The looped measurement ping gets the built-in reply.
	looped := req(2, "198.18.0.1")
	looped.Payload = append(make([]byte, 16), measurementMarker...)
	if v := h(looped); v.Action != client.ActionReply {
		t.Fatalf("looped: %+v", v)
	}
}
