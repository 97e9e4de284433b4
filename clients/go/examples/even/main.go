// Command even is the ten-line policy of clients/README.md (the lines between the markers are
// that example, word for word; test/e2e/package-go.test.ts checks it): reply to even sequences,
// consume odd ones, drain on Ctrl-C.
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
	// example:begin
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stats, err := client.Run(ctx, client.Options{Target: "127.0.0.1:50051", Name: "even"},
		func(req *client.Request) client.Verdict {
			if req.Sequence%2 == 0 {
				return client.Reply // the netstack's built-in Echo Reply
			}
			return client.Consume // dropped: no reply
		})
	fmt.Println(stats, err)
	// example:end
}
