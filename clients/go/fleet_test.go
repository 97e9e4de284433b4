package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/icmpfwd/client-go/icmpfwdv1"
)

func TestParseTargets(t *testing.T) {
	got, err := parseTargets("127.0.0.1:1, [fd00::1]:2,unix:/run/s.sock,dns:///icmpfwd.example:50051")
	want := []target{{addr: "127.0.0.1:1"}, {addr: "[fd00::1]:2"}, {addr: "unix:/run/s.sock"}, {name: "icmpfwd.example", port: 50051}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%v %v", got, err)
	}
	for bad, why := range map[string]string{
		"a:1,":      "an empty element",
		"host":      "want host:port",
		"host:0":    `bad port "0"`,
		"dns://x:1": "want dns:///name:port",
		"dns:///x":  "want host:port",
		"unix:":     "unix: needs a path",
	} {
		if err := ParseTargets(bad); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: %v, want %q", bad, err, why)
		}
	}
	d := target{name: "x", port: 7}
	if a, b := d.addrOf(netip.MustParseAddr("198.18.0.1")), d.addrOf(netip.MustParseAddr("fd00::1")); a != "198.18.0.1:7" || b != "[fd00::1]:7" {
		t.Fatal(a, b)
	}
}

// recorder is a real-socket service that welcomes, sends one request, and records what each
// session sent ("hello", "verdicts", "drain") until the client drains.
type recorder struct {
	pb.UnimplementedEchoForwarderServer
	mu       sync.Mutex
	sessions [][]string
	refuse   codes.Code
}

func (r *recorder) Connect(s pb.EchoForwarder_ConnectServer) error {
	if r.refuse != codes.OK {
		return status.Error(r.refuse, "refused by the test")
	}
	r.mu.Lock()
	i := len(r.sessions)
	r.sessions = append(r.sessions, nil)
	r.mu.Unlock()
	note := func(k string) {
		r.mu.Lock()
		r.sessions[i] = append(r.sessions[i], k)
		r.mu.Unlock()
	}
	if err := welcome(s); err != nil {
		return err
	}
	note("hello")
	if err := s.Send(batch(echo(1, 2, ""))); err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		switch {
		case m.GetVerdicts() != nil:
			note("verdicts")
		case m.GetDrain() != nil:
			note("drain")
			return nil
		}
	}
}

func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.sessions)
}

// listen serves a recorder on ip:port (port 0: any) and returns the port.
func listen(t *testing.T, ip string, port int, rec *recorder) int {
	t.Helper()
	lis, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterEchoForwarderServer(srv, rec)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().(*net.TCPAddr).Port
}

func eventually(t *testing.T, what string, pred func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if pred() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func fleetOptions(target string) Options {
	return Options{Target: target, Name: "go-fleet", Logger: func(Level, string, Fields) {},
		Backoff: Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}, DrainTimeout: 2 * time.Second}
}

func TestATargetListOpensOneSessionPerService(t *testing.T) {
	a, b := &recorder{}, &recorder{}
	pa, pb := listen(t, "127.0.0.1", 0, a), listen(t, "127.0.0.2", 0, b)
	ctx, cancel := context.WithCancel(context.Background())
	done := start(ctx, fleetOptions(fmt.Sprintf("127.0.0.1:%d,127.0.0.2:%d", pa, pb)), evenReply)
	eventually(t, "a verdict from each", func() bool { return a.log() == "[[hello verdicts]]" && b.log() == "[[hello verdicts]]" })
	cancel()
	res := await(t, done)
	if res.err != nil || res.stats.Sessions != 2 || res.stats.Reply != 2 {
		t.Fatalf("%v %v", res.stats, res.err)
	}
	if a.log() != "[[hello verdicts drain]]" || b.log() != "[[hello verdicts drain]]" {
		t.Fatal(a.log(), b.log())
	}
}

func TestDNSSessionsFollowTheResolvedAddresses(t *testing.T) {
	one, two := &recorder{}, &recorder{}
	port := listen(t, "127.0.0.1", 0, one)
	listen(t, "127.0.0.2", port, two)
	var mu sync.Mutex
	answer := []string{"127.0.0.1", "127.0.0.2"}
	var asked []string
	set := func(a ...string) { mu.Lock(); answer = a; mu.Unlock() }
	o := fleetOptions(fmt.Sprintf("dns:///svc.test:%d", port))
	o.ResolveInterval = 50 * time.Millisecond
	o.Resolver = func(_ context.Context, name string) ([]netip.Addr, error) {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, name)
		if answer[0] == "fail" {
			return nil, errors.New("SERVFAIL")
		}
		out := make([]netip.Addr, len(answer))
		for i, a := range answer {
			out[i] = netip.MustParseAddr(a)
		}
		return out, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := start(ctx, o, evenReply)
	eventually(t, "a session on each address", func() bool { return one.log() == "[[hello verdicts]]" && two.log() == "[[hello verdicts]]" })
	set("127.0.0.2") // 127.0.0.1 goes away: drained; the other stays
	eventually(t, "127.0.0.1 drained", func() bool { return one.log() == "[[hello verdicts drain]]" })
	set("fail") // a failed resolution keeps what there is
	mu.Lock()
	n := len(asked)
	mu.Unlock()
	eventually(t, "two failed resolutions", func() bool { mu.Lock(); defer mu.Unlock(); return len(asked) >= n+2 })
	if two.log() != "[[hello verdicts]]" {
		t.Fatal(two.log())
	}
	set("127.0.0.2", "127.0.0.1") // back: a new session
	eventually(t, "127.0.0.1 again", func() bool { return one.log() == "[[hello verdicts drain] [hello verdicts]]" })
	cancel()
	res := await(t, done)
	if res.err != nil || res.stats.Sessions != 3 || two.log() != "[[hello verdicts drain]]" {
		t.Fatalf("%v %v %s", res.stats, res.err, two.log())
	}
	for _, name := range asked {
		if name != "svc.test" {
			t.Fatalf("resolved %q", name)
		}
	}
}

func TestARefusalOnOneServiceDrainsTheOthersAndReturnsIt(t *testing.T) {
	good, bad := &recorder{}, &recorder{refuse: codes.Unauthenticated}
	pg, pbad := listen(t, "127.0.0.1", 0, good), listen(t, "127.0.0.2", 0, bad)
	res := await(t, start(context.Background(), fleetOptions(fmt.Sprintf("127.0.0.1:%d,127.0.0.2:%d", pg, pbad)), evenReply))
	if !errors.Is(res.err, ErrAuthentication) {
		t.Fatalf("want an authentication error, got %v", res.err)
	}
	// Never opened; opened but cancelled before its Hello went out ([[]]) or before the
	// service's Welcome reached the client ([[hello]]: the recorder notes the Hello once it has
	// sent Welcome, and a session not yet welcomed is given up, not drained); or drained.
	if l := good.log(); l != "[]" && l != "[[]]" && l != "[[hello]]" && !strings.HasSuffix(l, "drain]]") {
		t.Fatalf("the good service's session was not drained: %s", l)
	}
}

func TestJSONLogLine(t *testing.T) {
	var b syncBuffer
	l := JSONLogger(&b, false)
	l(LevelDebug, "hidden", nil)
	l(LevelWarn, "a > b", Fields{"target": "127.0.0.1:1", "session": "", "trace_id": "t"})
	line := b.String()
	if !strings.HasPrefix(line, `{"time":"`) || !strings.HasSuffix(line, `","level":"warn","msg":"a > b","target":"127.0.0.1:1","trace_id":"t"}`+"\n") ||
		len(`{"time":"2026-12-07T03:14:15.926Z"`) != strings.Index(line, `,"level"`) {
		t.Fatal(line)
	}
}
