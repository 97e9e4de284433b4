package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	client "github.com/icmpfwd/client-go"
)

// config is the parsed command line (docs/cli-contract.md).
type config struct {
	policy        string
	target        string
	token         string
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string
	name          string
	family        client.Family
	maxInFlight   uint64
	n             uint64
	rate          float64
	burst         float64
	delayMs       uint64
	measure       bool
	rttCacheMs    uint64
	maxPings      uint64
	resolveMs     uint64
	verbose       bool
	// relay: where it may send, how long it waits, and whether to skip raw sockets.
	allow         []netip.Prefix
	relayBudgetMs uint64
	unprivileged  bool
}

var policyNames = []string{"reply-all", "drop-all", "even-reply", "every-nth", "per-source-rate-limit", "proxy-latency", "observe-log", "relay"}

// intFlag is an integer flag with a lower bound (flag.Uint64 would take "-1" as a parse error
// without saying the bound).
type intFlag struct {
	v   *uint64
	min uint64
}

func (f intFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatUint(*f.v, 10)
}

func (f intFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("not an integer")
	}
	if n < int64(f.min) {
		return fmt.Errorf("below %d", f.min)
	}
	*f.v = uint64(n)
	return nil
}

type numberFlag struct{ v *float64 }

func (f numberFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatFloat(*f.v, 'g', -1, 64)
}

func (f numberFlag) Set(s string) error {
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return fmt.Errorf("not a number")
	}
	if n < 0 {
		return fmt.Errorf("below 0")
	}
	*f.v = n
	return nil
}

type familyFlag struct{ v *client.Family }

func (f familyFlag) String() string { return "" }

func (f familyFlag) Set(s string) error {
	switch s {
	case "ipv4":
		*f.v = client.IPv4
	case "ipv6":
		*f.v = client.IPv6
	default:
		return fmt.Errorf("want ipv4 or ipv6")
	}
	return nil
}

type targetFlag struct{ v *string }

func (f targetFlag) String() string {
	if f.v == nil {
		return ""
	}
	return *f.v
}

func (f targetFlag) Set(s string) error {
	if err := client.ParseTargets(s); err != nil {
		return err
	}
	*f.v = s
	return nil
}

func flagSet(c *config, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("icmpfwd-policy-go", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors: one line, by run
	fs.Usage = func() {}
	c.target = getenv("ICMPFWD_TARGET")
	if c.target == "" {
		c.target = client.DefaultTarget
	}
	c.token = getenv("ICMPFWD_TOKEN")
	c.n, c.rate, c.burst, c.delayMs, c.rttCacheMs, c.maxPings, c.resolveMs = 2, 1, 5, 100, 5000, 4, 30000
	c.relayBudgetMs = 3000
	fs.Var(targetFlag{&c.target}, "target", "comma-separated host:port, [v6addr]:port, unix:/path, dns:///name:port (env ICMPFWD_TARGET, default 127.0.0.1:50051)")
	fs.StringVar(&c.token, "token", c.token, "bearer token (env ICMPFWD_TOKEN)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM file: use TLS, trusting this CA")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM file: mTLS client certificate (with --tls-key)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM file: its key")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "the name checked in the server certificate (default: the target's host)")
	fs.StringVar(&c.name, "name", "", "client name in Hello (default icmpfwd-policy/<policy>)")
	fs.Var(familyFlag{&c.family}, "family", "ipv4 | ipv6: only this family (Hello filter; default both)")
	fs.Var(intFlag{&c.maxInFlight, 0}, "max-in-flight", "Hello.max_in_flight (default 0: the service's)")
	fs.Var(intFlag{&c.n, 1}, "n", "every-nth: reply to every nth request (default 2)")
	fs.Var(numberFlag{&c.rate}, "rate", "per-source-rate-limit: tokens per second per source (default 1)")
	fs.Var(numberFlag{&c.burst}, "burst", "per-source-rate-limit: bucket size (default 5)")
	fs.Var(intFlag{&c.delayMs, 0}, "delay-ms", "proxy-latency: delay of the synthetic reply (default 100; with --measure: the fallback)")
	fs.BoolVar(&c.measure, "measure", false, "proxy-latency: delay by this host's measured RTT to the destination")
	fs.Var(intFlag{&c.rttCacheMs, 0}, "rtt-cache-ms", "--measure: reuse a measurement this long (default 5000)")
	fs.Var(intFlag{&c.maxPings, 1}, "max-pings", "--measure: pings running at once (default 4)")
	fs.Var(intFlag{&c.resolveMs, 1000}, "resolve-interval-ms", "how often a dns:/// target is re-resolved (default 30000)")
	fs.Var(prefixesFlag{&c.allow}, "allow", "relay: the destination prefixes it may relay to (comma-separated or repeated; required)")
	fs.Var(intFlag{&c.relayBudgetMs, 1}, "relay-budget-ms", "relay: how long to wait for the destination's answer (default 3000; keep it inside the service's --synthetic-window)")
	fs.BoolVar(&c.unprivileged, "unprivileged", false, "relay: unprivileged ICMP datagram sockets even with CAP_NET_RAW (Echo Replies only, no router errors)")
	fs.BoolVar(&c.verbose, "v", false, "log every verdict")
	fs.BoolVar(&c.verbose, "verbose", false, "log every verdict")
	return fs
}

var singleDash = regexp.MustCompile(`(^|: |flag )-([A-Za-z])`)

// parse reads the policy and the flags, which may come before or after it. The error is one
// line naming the problem (or flag.ErrHelp).
func parse(args []string, getenv func(string) string) (config, error) {
	c := config{}
	fs := flagSet(&c, getenv)
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return c, err
			}
			// The flag package names a flag -n; the contract spells it --n.
			return c, errors.New(singleDash.ReplaceAllString(err.Error(), "$1--$2"))
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) == 0 {
		return c, fmt.Errorf("no policy: want one of %s", strings.Join(policyNames, ", "))
	}
	if len(rest) > 1 {
		return c, fmt.Errorf("unexpected argument %q after the policy %q", rest[1], rest[0])
	}
	c.policy = rest[0]
	known := false
	for _, p := range policyNames {
		known = known || p == c.policy
	}
	if !known {
		return c, fmt.Errorf("unknown policy %q: want one of %s", c.policy, strings.Join(policyNames, ", "))
	}
	if c.policy == "relay" && len(c.allow) == 0 {
		return c, fmt.Errorf("relay needs --allow: the destination prefixes it may relay to (it is never an open relay)")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if c.name == "" {
		c.name = "icmpfwd-policy/" + c.policy
	}
	return c, nil
}

func (c config) resolveInterval() time.Duration { return time.Duration(c.resolveMs) * time.Millisecond }

// usage prints the usage and every flag (--help).
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: icmpfwd-policy-go <policy> [flags]\n\npolicies: %s\n\nflags (--flag value or --flag=value):\n", strings.Join(policyNames, ", "))
	c := config{}
	fs := flagSet(&c, func(string) string { return "" })
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  --%s\n        %s\n", f.Name, f.Usage)
	})
}

// tlsConfig is nil (plaintext) unless --tls-ca or --tls-cert is given.
func tlsConfig(c config) (*tls.Config, error) {
	if c.tlsCA == "" && c.tlsCert == "" {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.tlsServerName, MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, err
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", c.tlsCA)
		}
	}
	if c.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
