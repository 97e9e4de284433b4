// Package client is a policy client for the icmpfwd decision service (icmpfwd.v1.EchoForwarder):
// Run opens the Connect stream, says Hello, calls a handler for every Echo Request and sends the
// verdicts back, one VerdictBatch per received batch. It reconnects with jittered exponential
// backoff and, when its context is cancelled, drains: it finishes what is in hand (verdicts and
// promised synthetic replies), sends Drain, decides what still arrives and returns once the
// service has ended the stream.
//
// It builds in GOPATH mode with Debian's golang-go, golang-google-grpc-dev and
// golang-google-protobuf-dev; its import path is github.com/icmpfwd/client-go (see go.sh).
//
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	stats, err := client.Run(ctx, client.Options{Target: "127.0.0.1:50051"},
//		func(req *client.Request) client.Verdict {
//			if req.Sequence%2 == 0 {
//				return client.Reply
//			}
//			return client.Consume
//		})
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/icmpfwd/client-go/icmpfwdv1"
)

// DefaultTarget is where `icmpfwd serve` listens by default.
const DefaultTarget = "127.0.0.1:50051"

// ProtocolVersion is the Hello.protocol_version this client speaks.
const ProtocolVersion = 1

// Handler decides one request. It may be called from several goroutines at once (the requests
// of one batch are decided concurrently), so a handler with state must guard it. A panic or
// the zero Verdict is a fallthrough and an error log line carrying the request's trace id.
// In Observe mode the result is ignored.
type Handler func(req *Request) Verdict

// Mode is what the session does with requests.
type Mode int

const (
	// Decide: every request must get a verdict before its deadline.
	Decide Mode = iota
	// Observe: the session gets copies and answers nothing.
	Observe
)

// Filter selects which requests the session receives; the zero Filter matches everything.
type Filter struct {
	Family              Family
	SourcePrefixes      []string
	DestinationPrefixes []string
	TemporaryOnly       bool
}

// Welcome is the service's answer to Hello.
type Welcome struct {
	SessionID   string
	Deadline    time.Duration
	MaxInFlight uint32
	MaxBatch    uint32
}

// Options configure Run. Only the handler is required.
type Options struct {
	// Target is host:port or unix:/path (default 127.0.0.1:50051).
	Target string
	// Name is the client name the service shows in ListSessions, logs and metrics.
	Name   string
	Mode   Mode
	Filter Filter
	// MaxInFlight is the most requests outstanding at once (0: the service's default).
	MaxInFlight uint32
	// PayloadBytes is how many payload bytes each request carries (0: none).
	PayloadBytes uint32
	// Token is sent as `authorization: Bearer TOKEN` (the service's --token).
	Token string
	// TLS, when set, connects with TLS (set Certificates for mTLS); nil is plaintext.
	TLS *tls.Config
	// Backoff is the reconnect schedule (zero fields: DefaultBackoff's).
	Backoff Backoff
	// DrainTimeout bounds how long a drain waits for the service to end the stream (default 5 s).
	DrainTimeout time.Duration
	// Logger gets the client's log lines (default: stderr with microsecond times).
	Logger *log.Logger
	// Verbose logs every verdict.
	Verbose bool
	// OnWelcome is called on every Welcome, after every (re)connect.
	OnWelcome func(Welcome)
	// Dialer replaces the network dial (tests use an in-memory listener).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// Stats is what the client decided over its lifetime.
type Stats struct {
	Reply, Consume, Fallthrough uint64
	// Errors are handler panics and invalid verdicts (each decided fallthrough).
	Errors uint64
	// Observed counts requests seen in Observe mode.
	Observed uint64
	// Sessions counts Welcomes.
	Sessions uint64
}

// Decided is the number of verdicts sent.
func (s Stats) Decided() uint64 { return s.Reply + s.Consume + s.Fallthrough }

// String is the summary line of the example binary.
func (s Stats) String() string {
	return fmt.Sprintf("decided=%d reply=%d consume=%d fallthrough=%d errors=%d observed=%d sessions=%d",
		s.Decided(), s.Reply, s.Consume, s.Fallthrough, s.Errors, s.Observed, s.Sessions)
}

// ErrAuthentication matches (errors.Is) a RefusedError for UNAUTHENTICATED or PERMISSION_DENIED.
var ErrAuthentication = errors.New("authentication failed")

// RefusedError is a status that reconnecting cannot fix: the service refused the credentials
// or the Hello. Run returns it instead of retrying.
type RefusedError struct {
	Code    codes.Code
	Message string
}

func (e *RefusedError) Error() string {
	what := "the service refused the session"
	if e.Code == codes.Unauthenticated || e.Code == codes.PermissionDenied {
		what = "authentication failed (check the token)"
	}
	return fmt.Sprintf("%s: %s: %s", what, codeName(e.Code), e.Message)
}

// Is makes errors.Is(err, ErrAuthentication) true for credential refusals.
func (e *RefusedError) Is(target error) bool {
	return target == ErrAuthentication && (e.Code == codes.Unauthenticated || e.Code == codes.PermissionDenied)
}

// codeName spells a status code as the gRPC spec does (UNAUTHENTICATED, not Unauthenticated).
func codeName(c codes.Code) string {
	switch c {
	case codes.OK:
		return "OK"
	case codes.Canceled:
		return "CANCELLED"
	case codes.InvalidArgument:
		return "INVALID_ARGUMENT"
	case codes.DeadlineExceeded:
		return "DEADLINE_EXCEEDED"
	case codes.NotFound:
		return "NOT_FOUND"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	case codes.FailedPrecondition:
		return "FAILED_PRECONDITION"
	case codes.Unimplemented:
		return "UNIMPLEMENTED"
	case codes.Internal:
		return "INTERNAL"
	case codes.Unavailable:
		return "UNAVAILABLE"
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	}
	return strings.ToUpper(c.String())
}

// permanent are the statuses that reconnecting cannot fix.
func permanent(c codes.Code) bool {
	switch c {
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition, codes.InvalidArgument, codes.Unimplemented:
		return true
	}
	return false
}

type counters struct {
	reply, consume, fallThrough, errors, observed, sessions atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Reply: c.reply.Load(), Consume: c.consume.Load(), Fallthrough: c.fallThrough.Load(),
		Errors: c.errors.Load(), Observed: c.observed.Load(), Sessions: c.sessions.Load(),
	}
}

type runner struct {
	o       Options
	handler Handler
	log     *log.Logger
	stats   counters
	hello   *pb.Hello
}

// Run connects to the service and decides every request with handler, reconnecting until ctx
// is cancelled; then it drains and returns the stats with a nil error. It returns a
// *RefusedError (errors.Is(err, ErrAuthentication) for a refused token) when the service
// refuses the session for good.
func Run(ctx context.Context, o Options, handler Handler) (Stats, error) {
	if handler == nil {
		return Stats{}, errors.New("client.Run: the handler is nil")
	}
	if o.Target == "" {
		o.Target = DefaultTarget
	}
	if o.Name == "" {
		o.Name = "icmpfwd-client-go"
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	r := &runner{o: o, handler: handler, log: o.Logger}
	if r.log == nil {
		r.log = log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	}
	r.hello = helloOf(o)
	attempt := 0
	for {
		welcomed, err := r.session(ctx)
		if ctx.Err() != nil {
			return r.stats.snapshot(), nil
		}
		if welcomed {
			attempt = 0
		}
		st := status.Convert(err)
		if err != nil && permanent(st.Code()) {
			return r.stats.snapshot(), &RefusedError{Code: st.Code(), Message: st.Message()}
		}
		delay := o.Backoff.Delay(attempt, rand.Float64)
		attempt++
		why := "the service ended the stream"
		if err != nil {
			why = fmt.Sprintf("%s: %s", codeName(st.Code()), st.Message())
		}
		r.log.Printf("disconnected from %s (%s); reconnecting in %v", o.Target, why, delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return r.stats.snapshot(), nil
		case <-t.C:
		}
	}
}

func helloOf(o Options) *pb.Hello {
	mode := pb.Mode_MODE_DECIDE
	if o.Mode == Observe {
		mode = pb.Mode_MODE_OBSERVE
	}
	family := pb.Family_FAMILY_UNSPECIFIED
	switch o.Filter.Family {
	case IPv4:
		family = pb.Family_FAMILY_IPV4
	case IPv6:
		family = pb.Family_FAMILY_IPV6
	}
	return &pb.Hello{
		ProtocolVersion: ProtocolVersion,
		ClientName:      o.Name,
		Mode:            mode,
		Filter: &pb.Filter{
			Family:              family,
			SourcePrefixes:      o.Filter.SourcePrefixes,
			DestinationPrefixes: o.Filter.DestinationPrefixes,
			TemporaryOnly:       o.Filter.TemporaryOnly,
		},
		MaxInFlight:  o.MaxInFlight,
		PayloadBytes: o.PayloadBytes,
	}
}

// dial opens a fresh connection for one session, so that Run's backoff is the only one.
func (r *runner) dial() (*grpc.ClientConn, error) {
	target := r.o.Target
	opts := []grpc.DialOption{}
	if r.o.TLS != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(r.o.TLS)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	dialer := r.o.Dialer
	if dialer == nil && strings.HasPrefix(target, "unix:") {
		path := strings.TrimPrefix(strings.TrimPrefix(target, "unix:"), "//")
		dialer = func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		target = "passthrough:///localhost"
	}
	if dialer != nil {
		opts = append(opts, grpc.WithContextDialer(dialer))
	}
	return grpc.Dial(target, opts...)
}

// stream is one Connect stream with serialized sends (a grpc stream's Send is not safe for
// concurrent use) and the batches it is still working on.
type stream struct {
	mu     sync.Mutex
	call   pb.EchoForwarder_ConnectClient
	closed bool
	// done is closed when the session ends.
	done chan struct{}
	// work: the batches being decided, each until its verdicts and its synthetic replies are sent.
	work map[uint64]chan struct{}
	next uint64
}

func newStream() *stream {
	return &stream{done: make(chan struct{}), work: map[uint64]chan struct{}{}}
}

func (s *stream) send(m *pb.ClientMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return io.ErrClosedPipe
	}
	return s.call.Send(m)
}

func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

// begin registers a batch; finish(id) ends it.
func (s *stream) begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	s.work[s.next] = make(chan struct{})
	return s.next
}

func (s *stream) finish(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.work[id])
	delete(s.work, id)
}

// inHand is the batches being worked on now (what a drain finishes before it sends Drain).
func (s *stream) inHand() []chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]chan struct{}, 0, len(s.work))
	for _, c := range s.work {
		out = append(out, c)
	}
	return out
}

// session runs one Connect stream from Hello to its end. The error is the stream's status
// (nil when the service ended it with OK).
func (r *runner) session(ctx context.Context) (welcomed bool, err error) {
	conn, err := r.dial()
	if err != nil {
		return false, status.Error(codes.InvalidArgument, err.Error())
	}
	defer conn.Close()
	// The stream outlives ctx: cancelling ctx drains it rather than cutting it off.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if r.o.Token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+r.o.Token)
	}

	var welcomedFlag atomic.Bool
	welcomeCh := make(chan struct{})
	s := newStream()
	var wg sync.WaitGroup
	defer func() {
		s.close()
		wg.Wait()
	}()

	// Cancelling ctx: before a Welcome, give up the stream; after it, drain.
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-s.done:
			return
		case <-ctx.Done():
		}
		select {
		case <-welcomeCh:
		default:
			cancel()
			return
		}
		t := time.NewTimer(r.o.DrainTimeout)
		defer t.Stop()
		// What is in hand first — verdicts and promised synthetic replies: the service ends a
		// drained stream as soon as nothing is in flight, and a consumed request is not — then
		// Drain. Batches that arrive meanwhile are still decided.
		for _, c := range s.inHand() {
			select {
			case <-c:
			case <-s.done:
				return
			case <-t.C:
				r.log.Printf("requests still being decided after %v; cancelling", r.o.DrainTimeout)
				cancel()
				return
			}
		}
		r.log.Printf("draining")
		if err := s.send(&pb.ClientMessage{Message: &pb.ClientMessage_Drain{Drain: &pb.Drain{}}}); err != nil {
			cancel()
			return
		}
		select {
		case <-s.done:
		case <-t.C:
			r.log.Printf("the service did not end the stream %v after Drain; cancelling", r.o.DrainTimeout)
			cancel()
		}
	}()

	call, err := pb.NewEchoForwarderClient(conn).Connect(sctx)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.call = call
	s.mu.Unlock()
	if err := s.send(&pb.ClientMessage{Message: &pb.ClientMessage_Hello{Hello: r.hello}}); err != nil && err != io.EOF {
		return false, err
	}
	// Batches decided in the background: the session waits for them before it returns, for at
	// most DrainTimeout (a stuck handler must not stop the reconnect loop; its late verdicts are
	// dropped with the stream, and its pending synthetic replies too).
	var batches sync.WaitGroup
	defer waitAtMost(&batches, r.o.DrainTimeout)
	for {
		m, err := call.Recv()
		if err == io.EOF {
			return welcomedFlag.Load(), nil
		}
		if err != nil {
			return welcomedFlag.Load(), err
		}
		switch msg := m.GetMessage().(type) {
		case *pb.ServerMessage_Welcome:
			w := msg.Welcome
			welcomedFlag.Store(true)
			close(welcomeCh)
			r.stats.sessions.Add(1)
			r.log.Printf("welcome: session=%s target=%s max_in_flight=%d deadline=%v",
				w.GetSessionId(), r.o.Target, w.GetMaxInFlight(), w.GetDeadline().AsDuration())
			if r.o.OnWelcome != nil {
				r.o.OnWelcome(Welcome{
					SessionID:   w.GetSessionId(),
					Deadline:    w.GetDeadline().AsDuration(),
					MaxInFlight: w.GetMaxInFlight(),
					MaxBatch:    w.GetMaxBatch(),
				})
			}
		case *pb.ServerMessage_Requests:
			if r.o.Mode == Observe {
				r.observe(msg.Requests)
				continue
			}
			batches.Add(1)
			id := s.begin()
			go func(b *pb.EchoRequestBatch) {
				defer batches.Done()
				defer s.finish(id)
				r.decideBatch(s, b)
			}(msg.Requests)
		case *pb.ServerMessage_Rejection:
			rj := msg.Rejection
			r.log.Printf("rejected: request=%d %s: %s", rj.GetRequestId(), rj.GetReason(), rj.GetMessage())
		case *pb.ServerMessage_Draining:
			r.log.Printf("the service is draining (grace %v)", msg.Draining.GetGrace().AsDuration())
		}
	}
}

func (r *runner) observe(b *pb.EchoRequestBatch) {
	if d := b.GetObserverDrops(); d > 0 {
		r.log.Printf("observer lost %d copies", d)
	}
	for _, e := range b.GetRequests() {
		r.stats.observed.Add(1)
		req := FromProto(e)
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.stats.errors.Add(1)
					r.log.Printf("handler panicked: %s: %v", req, p)
				}
			}()
			r.handler(req)
		}()
	}
}

// Decide runs the handler for one request: a panic or an invalid verdict is a fallthrough and
// an error log line with the request's trace id.
func (r *runner) decide(req *Request) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			r.stats.errors.Add(1)
			r.log.Printf("error: handler panicked, falling through: %s: %v", req, p)
			v = Fallthrough
		}
	}()
	v = r.handler(req)
	switch v.Action {
	case ActionReply, ActionConsume, ActionFallthrough:
		return v
	}
	r.stats.errors.Add(1)
	r.log.Printf("error: the handler returned no verdict (action %d), falling through: %s", v.Action, req)
	return Fallthrough
}

// decideBatch decides one received batch (its requests concurrently) and sends one
// VerdictBatch for it, then its synthetic replies when they are due.
func (r *runner) decideBatch(s *stream, b *pb.EchoRequestBatch) {
	reqs := b.GetRequests()
	verdicts := make([]Verdict, len(reqs))
	parsed := make([]*Request, len(reqs))
	var wg sync.WaitGroup
	for i, e := range reqs {
		parsed[i] = FromProto(e)
		if len(reqs) == 1 {
			verdicts[i] = r.decide(parsed[i])
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			verdicts[i] = r.decide(parsed[i])
		}(i)
	}
	wg.Wait()
	out := make([]*pb.Verdict, len(reqs))
	for i, v := range verdicts {
		switch v.Action {
		case ActionReply:
			r.stats.reply.Add(1)
		case ActionConsume:
			r.stats.consume.Add(1)
		default:
			r.stats.fallThrough.Add(1)
		}
		out[i] = &pb.Verdict{RequestId: parsed[i].ID, Action: v.Action.wire(), ApplyToFlowMs: v.FlowMs}
		if r.o.Verbose {
			r.log.Printf("verdict %s: %s", v.Action, parsed[i])
		}
	}
	err := s.send(&pb.ClientMessage{Message: &pb.ClientMessage_Verdicts{Verdicts: &pb.VerdictBatch{Verdicts: out}}})
	if err != nil {
		if !errors.Is(err, io.ErrClosedPipe) {
			r.log.Printf("sending %d verdicts failed: %v", len(out), err)
		}
		return
	}
	var synthetic sync.WaitGroup
	for i, v := range verdicts {
		if v.Action == ActionConsume && v.Synthetic != nil {
			synthetic.Add(1)
			go func(req *Request, syn Synthetic) {
				defer synthetic.Done()
				r.synthetic(s, req, syn)
			}(parsed[i], *v.Synthetic)
		}
	}
	synthetic.Wait()
}

// synthetic sends a SyntheticReply for req after syn.Delay, unless the stream ends first.
func (r *runner) synthetic(s *stream, req *Request, syn Synthetic) {
	t := time.NewTimer(syn.Delay)
	defer t.Stop()
	select {
	case <-s.done:
		return
	case <-t.C:
	}
	m := &pb.ClientMessage{Message: &pb.ClientMessage_SyntheticReply{SyntheticReply: &pb.SyntheticReply{
		RequestId: req.ID,
		Payload:   syn.Payload,
	}}}
	if err := s.send(m); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		r.log.Printf("synthetic reply failed: %s: %v", req, err)
	}
}

// waitAtMost waits for wg, or for d, whichever comes first.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
