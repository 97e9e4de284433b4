package main

import (
	"sort"

	client "github.com/icmpfwd/client-go"
)

// policies are the example policies, by name.
var policies = map[string]client.Handler{
	// reply-all: every request gets the built-in Echo Reply.
	"reply-all": func(*client.Request) client.Verdict { return client.Reply },
	// drop-all: every request is consumed (no reply).
	"drop-all": func(*client.Request) client.Verdict { return client.Consume },
	// even-reply: even sequence numbers are answered, odd ones consumed.
	"even-reply": evenReply,
}

func evenReply(req *client.Request) client.Verdict {
	if req.Sequence%2 == 0 {
		return client.Reply
	}
	return client.Consume
}

func policyNames() []string {
	names := make([]string, 0, len(policies))
	for n := range policies {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
