package client

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/icmpfwd/client-go/icmpfwdv1"
)

const (
	traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
)

// fakeService is an in-memory EchoForwarder whose Connect is the test's function.
type fakeService struct {
	pb.UnimplementedEchoForwarderServer
	connects atomic.Int32
	connect  func(n int32, s pb.EchoForwarder_ConnectServer) error
}

func (f *fakeService) Connect(s pb.EchoForwarder_ConnectServer) error {
	return f.connect(f.connects.Add(1), s)
}

// serve starts the fake service on an in-memory listener and returns the options that reach it.
func serve(t *testing.T, connect func(n int32, s pb.EchoForwarder_ConnectServer) error, opts ...grpc.ServerOption) (*fakeService, Options, *syncBuffer) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	f := &fakeService{connect: connect}
	pb.RegisterEchoForwarderServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	logs := &syncBuffer{}
	return f, Options{
		Target:       "bufconn:1",
		Name:         "go-test",
		Dialer:       func(context.Context, string) (net.Conn, error) { return lis.Dial() },
		Logger:       JSONLogger(logs, true),
		Backoff:      Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		DrainTimeout: 2 * time.Second,
	}, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func welcome(s pb.EchoForwarder_ConnectServer) error {
	m, err := s.Recv()
	if err != nil {
		return err
	}
	if m.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "want Hello first")
	}
	return s.Send(&pb.ServerMessage{Message: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{
		ProtocolVersion: 1, SessionId: "s1", Deadline: durationpb.New(100 * time.Millisecond), MaxInFlight: 64, MaxBatch: 16,
	}}})
}

func echo(id uint64, seq uint32, tp string) *pb.EchoRequest {
	return &pb.EchoRequest{
		RequestId: id, Family: pb.Family_FAMILY_IPV4, Source: []byte{198, 18, 0, 1}, Destination: []byte{198, 18, 0, 2},
		Ident: 7, Sequence: seq, Ttl: 64, Traceparent: tp,
	}
}

func batch(reqs ...*pb.EchoRequest) *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_Requests{Requests: &pb.EchoRequestBatch{Requests: reqs}}}
}

// recvVerdicts reads client messages until a VerdictBatch, failing on anything else.
func recvVerdicts(s pb.EchoForwarder_ConnectServer) ([]*pb.Verdict, error) {
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	v := m.GetVerdicts()
	if v == nil {
		return nil, status.Errorf(codes.InvalidArgument, "want a VerdictBatch, got %v", m)
	}
	return v.GetVerdicts(), nil
}

func evenReply(req *Request) Verdict {
	if req.Sequence%2 == 0 {
		return Reply
	}
	return Consume
}

// waitDrain reads until the client's Drain, which must come before anything else unexpected.
func waitDrain(s pb.EchoForwarder_ConnectServer) error {
	m, err := s.Recv()
	if err != nil {
		return err
	}
	if m.GetDrain() == nil {
		return status.Errorf(codes.InvalidArgument, "want Drain, got %v", m)
	}
	return nil
}

type result struct {
	stats Stats
	err   error
}

func start(ctx context.Context, o Options, h Handler) <-chan result {
	done := make(chan result, 1)
	go func() {
		s, err := Run(ctx, o, h)
		done <- result{s, err}
	}()
	return done
}

func await(t *testing.T, done <-chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return result{}
	}
}

func TestOneVerdictBatchPerReceivedBatch(t *testing.T) {
	type seen struct {
		hello  *pb.Hello
		first  []*pb.Verdict
		second []*pb.Verdict
		err    error
	}
	got := make(chan seen, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		var r seen
		defer func() { got <- r }()
		m, err := s.Recv()
		if err != nil {
			r.err = err
			return err
		}
		r.hello = m.GetHello()
		_ = s.Send(&pb.ServerMessage{Message: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{SessionId: "s1"}}})
		_ = s.Send(batch(echo(1, 1, ""), echo(2, 2, ""), echo(3, 3, "")))
		if r.first, r.err = recvVerdicts(s); r.err != nil {
			return r.err
		}
		_ = s.Send(batch(echo(4, 4, "")))
		if r.second, r.err = recvVerdicts(s); r.err != nil {
			return r.err
		}
		cancel()
		if r.err = waitDrain(s); r.err != nil {
			return r.err
		}
		return nil // nothing in flight: the stream ends with OK, as the service does
	})
	o.MaxInFlight = 32
	o.Filter = Filter{Family: IPv4, DestinationPrefixes: []string{"198.18.0.0/24"}}
	res := await(t, start(ctx, o, evenReply))
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	h := r.hello
	if h.GetProtocolVersion() != 1 || h.GetClientName() != "go-test" || h.GetMode() != pb.Mode_MODE_DECIDE ||
		h.GetMaxInFlight() != 32 || h.GetFilter().GetFamily() != pb.Family_FAMILY_IPV4 ||
		strings.Join(h.GetFilter().GetDestinationPrefixes(), ",") != "198.18.0.0/24" {
		t.Fatalf("Hello: %v", h)
	}
	want := []pb.Action{pb.Action_ACTION_CONSUME, pb.Action_ACTION_REPLY, pb.Action_ACTION_CONSUME}
	if len(r.first) != 3 {
		t.Fatalf("first batch: want one VerdictBatch of 3, got %v", r.first)
	}
	for i, v := range r.first {
		if v.GetRequestId() != uint64(i+1) || v.GetAction() != want[i] {
			t.Errorf("verdict %d: %v", i, v)
		}
	}
	if len(r.second) != 1 || r.second[0].GetRequestId() != 4 || r.second[0].GetAction() != pb.Action_ACTION_REPLY {
		t.Fatalf("second batch: %v", r.second)
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if s := res.stats; s.Reply != 2 || s.Consume != 2 || s.Fallthrough != 0 || s.Sessions != 1 || s.Decided() != 4 {
		t.Fatalf("stats: %v", s)
	}
}

func TestHandlerPanicsAndNonVerdictsFallThrough(t *testing.T) {
	got := make(chan []*pb.Verdict, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, o, logs := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		if err := welcome(s); err != nil {
			return err
		}
		_ = s.Send(batch(echo(1, 1, traceparent), echo(2, 2, ""), echo(3, 3, "")))
		v, err := recvVerdicts(s)
		got <- v
		cancel()
		if err != nil {
			return err
		}
		return waitDrain(s)
	})
	o.Verbose = true
	res := await(t, start(ctx, o, func(req *Request) Verdict {
		switch req.Sequence {
		case 1:
			panic("policy bug")
		case 2:
			return Verdict{} // not an answer
		}
		return Reply.WithFlow(1500 * time.Millisecond)
	}))
	v := <-got
	want := []pb.Action{pb.Action_ACTION_FALLTHROUGH, pb.Action_ACTION_FALLTHROUGH, pb.Action_ACTION_REPLY}
	if len(v) != 3 {
		t.Fatalf("want 3 verdicts, got %v", v)
	}
	for i := range want {
		if v[i].GetAction() != want[i] {
			t.Errorf("verdict %d: %v", i, v[i])
		}
	}
	if v[2].GetApplyToFlowMs() != 1500 {
		t.Errorf("WithFlow: %v", v[2])
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if s := res.stats; s.Errors != 2 || s.Fallthrough != 2 || s.Reply != 1 {
		t.Fatalf("stats: %v", s)
	}
	out := logs.String()
	if !strings.Contains(out, "handler panicked") || !strings.Contains(out, "policy bug") ||
		!strings.Contains(out, "trace_id="+traceID) {
		t.Fatalf("the panic's log line lacks the cause or the trace id:\n%s", out)
	}
	// Verbose: one line per verdict, with the trace id where the request has one.
	if !strings.Contains(out, `"level":"debug","msg":"verdict fallthrough: request=1 198.18.0.1 > 198.18.0.2 ident=7 seq=1 trace_id=`+traceID+`","request_id":1,"session":"s1","target":"bufconn:1","trace_id":"`+traceID+`"}`+"\n") ||
		!strings.Contains(out, `"level":"debug","msg":"verdict reply: request=3 198.18.0.1 > 198.18.0.2 ident=7 seq=3","request_id":3,"session":"s1","target":"bufconn:1"}`+"\n") {
		t.Fatalf("verdict log lines:\n%s", out)
	}
}

func TestDrainDecidesWhatIsInHandThenSendsDrain(t *testing.T) {
	got := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		err := func() error {
			if err := welcome(s); err != nil {
				return err
			}
			_ = s.Send(batch(echo(9, 2, "")))
			v, err := recvVerdicts(s) // before Drain
			if err != nil {
				return err
			}
			if len(v) != 1 || v[0].GetRequestId() != 9 {
				return status.Errorf(codes.InvalidArgument, "verdicts: %v", v)
			}
			return waitDrain(s)
		}()
		got <- err
		return err
	})
	res := await(t, start(ctx, o, func(req *Request) Verdict {
		cancel() // drain while this request is still being decided
		time.Sleep(50 * time.Millisecond)
		return evenReply(req)
	}))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if res.err != nil || res.stats.Reply != 1 {
		t.Fatalf("Run: %v %v", res.stats, res.err)
	}
}

func TestReconnectsAfterTheStreamFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var welcomes atomic.Int32
	f, o, logs := serve(t, func(n int32, s pb.EchoForwarder_ConnectServer) error {
		switch n {
		case 1:
			return status.Error(codes.Unavailable, "not yet") // before any Welcome
		case 2:
			if err := welcome(s); err != nil {
				return err
			}
			return status.Error(codes.Unavailable, "restarting")
		}
		if err := welcome(s); err != nil {
			return err
		}
		_ = s.Send(batch(echo(1, 2, "")))
		if _, err := recvVerdicts(s); err != nil {
			return err
		}
		cancel()
		return waitDrain(s)
	})
	o.OnWelcome = func(w Welcome) {
		welcomes.Add(1)
		if w.SessionID != "s1" || w.Deadline != 100*time.Millisecond || w.MaxBatch != 16 {
			t.Errorf("Welcome: %+v", w)
		}
	}
	res := await(t, start(ctx, o, evenReply))
	if res.err != nil {
		t.Fatal(res.err)
	}
	if f.connects.Load() != 3 || welcomes.Load() != 2 || res.stats.Sessions != 2 || res.stats.Reply != 1 {
		t.Fatalf("connects=%d welcomes=%d stats=%v", f.connects.Load(), welcomes.Load(), res.stats)
	}
	if !strings.Contains(logs.String(), "UNAVAILABLE: restarting") {
		t.Fatalf("no reconnect log line:\n%s", logs.String())
	}
}

func TestAStuckHandlerDoesNotStopTheReconnectLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck := make(chan struct{})
	defer close(stuck)
	f, o, _ := serve(t, func(n int32, s pb.EchoForwarder_ConnectServer) error {
		if err := welcome(s); err != nil {
			return err
		}
		if n == 1 {
			_ = s.Send(batch(echo(1, 1, "")))
			return status.Error(codes.Unavailable, "restarting") // request 1 is still being decided
		}
		return waitDrain(s)
	})
	o.DrainTimeout = 100 * time.Millisecond
	var welcomes atomic.Int32
	o.OnWelcome = func(Welcome) {
		if welcomes.Add(1) == 2 {
			cancel()
		}
	}
	res := await(t, start(ctx, o, func(req *Request) Verdict {
		if req.ID == 1 {
			<-stuck
		}
		return Reply
	}))
	if res.err != nil || f.connects.Load() != 2 || res.stats.Sessions != 2 {
		t.Fatalf("connects=%d %v %v", f.connects.Load(), res.stats, res.err)
	}
}

func TestTokenAndRefusedCredentials(t *testing.T) {
	const token = "go-client-token-0123456789"
	f, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		md, _ := metadata.FromIncomingContext(s.Context())
		if a := md.Get("authorization"); len(a) != 1 || a[0] != "Bearer "+token {
			return status.Error(codes.Unauthenticated, "a valid bearer token is required")
		}
		if err := welcome(s); err != nil {
			return err
		}
		return waitDrain(s)
	})
	// Without the token: a clear error, at once, and no retry.
	res := await(t, start(context.Background(), o, evenReply))
	var refused *RefusedError
	if !errors.Is(res.err, ErrAuthentication) || !errors.As(res.err, &refused) || refused.Code != codes.Unauthenticated {
		t.Fatalf("want an authentication error, got %v", res.err)
	}
	if msg := res.err.Error(); !strings.Contains(msg, "authentication failed") || !strings.Contains(msg, "UNAUTHENTICATED") {
		t.Fatalf("error text: %s", msg)
	}
	if f.connects.Load() != 1 {
		t.Fatalf("retried a refused token: %d connects", f.connects.Load())
	}
	// With it: a session.
	ctx, cancel := context.WithCancel(context.Background())
	o.Token = token
	o.OnWelcome = func(Welcome) { cancel() }
	res = await(t, start(ctx, o, evenReply))
	if res.err != nil || res.stats.Sessions != 1 {
		t.Fatalf("with the token: %v %v", res.stats, res.err)
	}
}

// selfSigned makes a certificate for "icmpfwd.test" and the pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "icmpfwd.test"}, DNSNames: []string{"icmpfwd.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		if err := welcome(s); err != nil {
			return err
		}
		return waitDrain(s)
	}, grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	// An untrusted server certificate: no session (a transport error, so it retries).
	bad := o
	bad.TLS = &tls.Config{ServerName: "icmpfwd.test", RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	badCtx, badCancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer badCancel()
	if res := await(t, start(badCtx, bad, evenReply)); res.stats.Sessions != 0 || f.connects.Load() != 0 {
		t.Fatalf("connected to an untrusted server: %v", res.stats)
	}
	o.TLS = &tls.Config{ServerName: "icmpfwd.test", RootCAs: pool, MinVersion: tls.VersionTLS12}
	o.OnWelcome = func(Welcome) { cancel() }
	if res := await(t, start(ctx, o, evenReply)); res.err != nil || res.stats.Sessions != 1 {
		t.Fatalf("with TLS: %v %v", res.stats, res.err)
	}
}

func TestSyntheticReplyFollowsTheConsume(t *testing.T) {
	got := make(chan *pb.ClientMessage, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		if err := welcome(s); err != nil {
			return err
		}
		_ = s.Send(batch(echo(5, 1, "")))
		for i := 0; i < 2; i++ {
			m, err := s.Recv()
			if err != nil {
				return err
			}
			got <- m
			cancel() // after the verdict: the drain sends the promised reply before Drain
		}
		return waitDrain(s)
	})
	begin := time.Now()
	res := await(t, start(ctx, o, func(*Request) Verdict { return SyntheticReply(100*time.Millisecond, []byte("pong")) }))
	if res.err != nil {
		t.Fatal(res.err)
	}
	v, syn := <-got, <-got
	if vs := v.GetVerdicts().GetVerdicts(); len(vs) != 1 || vs[0].GetAction() != pb.Action_ACTION_CONSUME {
		t.Fatalf("want a consume verdict first, got %v", v)
	}
	sr := syn.GetSyntheticReply()
	if sr == nil || sr.GetRequestId() != 5 || string(sr.GetPayload()) != "pong" {
		t.Fatalf("want the synthetic reply, got %v", syn)
	}
	if time.Since(begin) < 100*time.Millisecond {
		t.Fatal("the synthetic reply came before its delay")
	}
}

func TestCancelBeforeWelcomeReturns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, o, _ := serve(t, func(_ int32, s pb.EchoForwarder_ConnectServer) error {
		<-s.Context().Done() // never welcomes
		return nil
	})
	done := start(ctx, o, evenReply)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if res := await(t, done); res.err != nil || res.stats.Sessions != 0 {
		t.Fatalf("%v %v", res.stats, res.err)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
	lowest := func() float64 { return 0 }
	highest := func() float64 { return 0.999999 }
	prev := time.Duration(0)
	for attempt := 0; attempt < 40; attempt++ {
		base := 100 * time.Millisecond << uint(attempt)
		if attempt >= 6 || base > 5*time.Second {
			base = 5 * time.Second
		}
		lo, hi := b.Delay(attempt, lowest), b.Delay(attempt, highest)
		if lo != time.Duration(float64(base)*0.8) || hi < time.Duration(float64(base)*1.19) || hi > time.Duration(float64(base)*1.2) {
			t.Fatalf("attempt %d: [%v, %v] for base %v", attempt, lo, hi, base)
		}
		if lo < prev {
			t.Fatalf("attempt %d: the delay shrank", attempt)
		}
		prev = lo
	}
	if d := (Backoff{}).Delay(0, lowest); d != 80*time.Millisecond {
		t.Fatalf("defaults: %v", d)
	}
	if d := (Backoff{Jitter: -1}).Delay(3, highest); d != 800*time.Millisecond {
		t.Fatalf("no jitter: %v", d)
	}
	if d := b.Delay(-5, lowest); d != 80*time.Millisecond {
		t.Fatalf("negative attempt: %v", d)
	}
}

func TestRequestFromProto(t *testing.T) {
	r := FromProto(&pb.EchoRequest{
		RequestId: 7, Family: pb.Family_FAMILY_IPV6, Source: netip.MustParseAddr("fd00:1::1").AsSlice(),
		Destination: netip.MustParseAddr("fd00:1::2").AsSlice(), Ident: 0x1234, Sequence: 3, Ttl: 64,
		PayloadLength: 56, Budget: durationpb.New(80 * time.Millisecond), Traceparent: traceparent,
	})
	if r.Family != IPv6 || r.Source.String() != "fd00:1::1" || r.Destination.String() != "fd00:1::2" ||
		r.Ident != 0x1234 || r.Sequence != 3 || r.TTL != 64 || r.PayloadLength != 56 ||
		r.Budget != 80*time.Millisecond || r.TraceID != traceID || !r.ReceivedAt.IsZero() {
		t.Fatalf("%+v", r)
	}
	if s := r.String(); s != "request=7 fd00:1::1 > fd00:1::2 ident=4660 seq=3 trace_id="+traceID {
		t.Fatalf("String: %s", s)
	}
	for _, bad := range []string{"", "00-" + strings.Repeat("0", 32) + "-00f067aa0ba902b7-01", "garbage", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		if id := TraceIDOf(bad); id != "" {
			t.Errorf("TraceIDOf(%q) = %q", bad, id)
		}
	}
}
