package main

import (
	"io"
	"testing"

	client "github.com/icmpfwd/client-go"
)

func TestParseTakesFlagsBeforeAndAfterThePolicy(t *testing.T) {
	c, err := parse([]string{"-v", "even-reply", "--target", "unix:/run/s.sock", "--token", "t0k"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.policy != "even-reply" || c.target != "unix:/run/s.sock" || c.token != "t0k" || !c.verbose || c.name != "go-even-reply" {
		t.Fatalf("%+v", c)
	}
	if _, err := parse([]string{"reply-none"}, io.Discard); err == nil {
		t.Fatal("an unknown policy was accepted")
	}
	if _, err := parse([]string{"drop-all", "reply-all"}, io.Discard); err == nil {
		t.Fatal("two policies were accepted")
	}
}

func TestPolicies(t *testing.T) {
	want := map[string][2]client.Action{ // sequence 1, sequence 2
		"reply-all":  {client.ActionReply, client.ActionReply},
		"drop-all":   {client.ActionConsume, client.ActionConsume},
		"even-reply": {client.ActionConsume, client.ActionReply},
	}
	if len(policies) != len(want) {
		t.Fatalf("policies: %v", policyNames())
	}
	for name, w := range want {
		for i, seq := range []uint16{1, 2} {
			if a := policies[name](&client.Request{Sequence: seq}).Action; a != w[i] {
				t.Errorf("%s seq=%d: %v", name, seq, a)
			}
		}
	}
}
