// Command icmpfwd-policy-go runs an example policy against the icmpfwd decision service; it
// follows docs/cli-contract.md (the same flags, environment, exit codes and log lines as the
// TypeScript and Python CLIs).
//
//	icmpfwd-policy-go <policy> [flags]      flags before or after the policy, --flag value or --flag=value
//
// SIGINT/SIGTERM drains and prints `summary policy=… decided=N …` on stdout (exit 0); a second
// signal exits at once (130). Exit 2: a usage error or refused credentials; 1: anything else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	client "github.com/icmpfwd/client-go"
)

// The exit codes of the contract.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		usage(stdout)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "icmpfwd-policy-go: %v\n", err)
		return exitUsage
	}
	logger := client.JSONLogger(stderr, c.verbose)
	tlsCfg, err := tlsConfig(c)
	if err != nil {
		logger(client.LevelError, "cannot read the TLS files: "+err.Error(), nil)
		return exitFailed
	}
	p := newPolicy(c, logger)
	if c.policy == "relay" {
		rp, closeRelay, err := newRelayPolicy(c, logger)
		if err != nil {
			logger(client.LevelError, "relay: "+err.Error(), nil)
			return exitFailed
		}
		defer closeRelay()
		p = rp
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
	stats, err := client.Run(ctx, client.Options{
		Target:          c.target,
		Name:            c.name,
		Mode:            p.mode,
		Filter:          client.Filter{Family: c.family},
		MaxInFlight:     uint32(c.maxInFlight),
		PayloadBytes:    p.payloadBytes,
		Token:           c.token,
		TLS:             tlsCfg,
		ResolveInterval: c.resolveInterval(),
		Logger:          logger,
		Verbose:         c.verbose,
	}, p.handler)
	code := exitOK
	if err != nil {
		if errors.Is(err, client.ErrAuthentication) {
			logger(client.LevelError, err.Error(), nil) // "authentication failed (check the token): …"
			code = exitUsage
		} else {
			logger(client.LevelError, err.Error(), nil)
			code = exitFailed
		}
	}
	fmt.Fprintf(stdout, "summary policy=%s %s%s\n", c.policy, stats, p.extra())
	return code
}
