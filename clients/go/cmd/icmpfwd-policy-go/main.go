// Command icmpfwd-policy-go runs an example policy against the icmpfwd decision service.
//
//	icmpfwd-policy-go <reply-all|drop-all|even-reply> [--target T] [--token T] [--name N]
//	                  [--max-in-flight N] [--ca FILE] [--cert FILE --key FILE] [--server-name N] [-v]
//
// SIGINT/SIGTERM drains and prints `summary: decided=N reply=… consume=… …` on stdout; a second
// signal exits at once (130). A refused token exits 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	client "github.com/icmpfwd/client-go"
)

type config struct {
	policy      string
	target      string
	token       string
	name        string
	maxInFlight uint
	ca          string
	cert        string
	key         string
	serverName  string
	verbose     bool
}

// parse reads the policy name and the flags, which may come before or after it.
func parse(args []string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("icmpfwd-policy-go", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: icmpfwd-policy-go <%s> [flags]\n", strings.Join(policyNames(), "|"))
		fs.PrintDefaults()
	}
	target := os.Getenv("ICMPFWD_TARGET")
	if target == "" {
		target = client.DefaultTarget
	}
	fs.StringVar(&c.target, "target", target, "host:port or unix:/path (env ICMPFWD_TARGET)")
	fs.StringVar(&c.token, "token", os.Getenv("ICMPFWD_TOKEN"), "bearer token for the service's --token (env ICMPFWD_TOKEN)")
	fs.StringVar(&c.name, "name", "", "client name in Hello (default go-<policy>)")
	fs.UintVar(&c.maxInFlight, "max-in-flight", 0, "Hello.max_in_flight (0: the service's default)")
	fs.StringVar(&c.ca, "ca", "", "TLS: PEM file of the CA to trust (turns TLS on)")
	fs.StringVar(&c.cert, "cert", "", "mTLS: PEM client certificate (with --key; turns TLS on)")
	fs.StringVar(&c.key, "key", "", "mTLS: PEM client key")
	fs.StringVar(&c.serverName, "server-name", "", "TLS: the name to verify (default: the target's host)")
	fs.BoolVar(&c.verbose, "v", false, "log every verdict (with the request's trace_id)")
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rest) != 1 {
		fs.Usage()
		return c, fmt.Errorf("want one policy, got %d arguments", len(rest))
	}
	c.policy = rest[0]
	if _, ok := policies[c.policy]; !ok {
		return c, fmt.Errorf("unknown policy %q: one of %s", c.policy, strings.Join(policyNames(), ", "))
	}
	if c.name == "" {
		c.name = "go-" + c.policy
	}
	return c, nil
}

func tlsConfig(c config) (*tls.Config, error) {
	if c.ca == "" && c.cert == "" {
		return nil, nil
	}
	t := &tls.Config{ServerName: c.serverName, MinVersion: tls.VersionTLS12}
	if c.ca != "" {
		pem, err := os.ReadFile(c.ca)
		if err != nil {
			return nil, err
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", c.ca)
		}
	}
	if c.cert != "" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	c, err := parse(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "icmpfwd-policy-go: %v\n", err)
		return 64
	}
	tlsCfg, err := tlsConfig(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "icmpfwd-policy-go: %v\n", err)
		return 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // the first signal drains
		<-sigs
		os.Exit(130)
	}()
	logger := log.New(os.Stderr, "icmpfwd-policy-go: ", log.LstdFlags|log.Lmicroseconds)
	stats, err := client.Run(ctx, client.Options{
		Target:      c.target,
		Name:        c.name,
		MaxInFlight: uint32(c.maxInFlight),
		Token:       c.token,
		TLS:         tlsCfg,
		Logger:      logger,
		Verbose:     c.verbose,
	}, policies[c.policy])
	code := 0
	if err != nil {
		fmt.Fprintf(os.Stderr, "icmpfwd-policy-go: %v\n", err)
		code = 1
		if errors.Is(err, client.ErrAuthentication) {
			code = 2
		}
	}
	fmt.Printf("summary: %s policy=%s\n", stats, c.policy)
	return code
}
