// Command even is the ten-line policy of clients/README.md: reply to even sequences, consume
// odd ones, drain on Ctrl-C. Run it with clients/go/go.sh run ./examples/even [TARGET].
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	client "github.com/icmpfwd/client-go"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	target := client.DefaultTarget
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	stats, err := client.Run(ctx, client.Options{Target: target, Name: "even"}, func(req *client.Request) client.Verdict {
		if req.Sequence%2 == 0 {
			return client.Reply // the netstack's built-in Echo Reply
		}
		return client.Consume // dropped: no reply
	})
	fmt.Println(stats, err)
}
