// Package client is a policy client for the icmpfwd decision service (icmpfwd.v1.EchoForwarder):
// Run opens the Connect stream, says Hello, calls a handler for every Echo Request and sends the
// verdicts back, one VerdictBatch per received batch. It reconnects with jittered exponential
// backoff and, when its context is cancelled, drains: it finishes what is in hand (verdicts and
// promised synthetic replies), sends Drain, decides what still arrives and returns once the
// service has ended the stream.
//
// Options.Target is a list (docs/cli-contract.md): one session per service, and for a
// dns:///name:port element one per address the name resolves to, re-resolved every
// ResolveInterval; each session reconnects on its own.
//
// It builds in module mode (go.mod) or in GOPATH mode with Debian's golang-go,
// golang-google-grpc-dev and golang-google-protobuf-dev; its import path is
// github.com/icmpfwd/client-go (see README.md).
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
	"math/rand"
	"net"
	"os"
	"sort"
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
	// Target is a comma-separated list of host:port, [v6addr]:port, unix:/path and
	// dns:///name:port (every A/AAAA address of name) (default 127.0.0.1:50051).
	Target string
	// ResolveInterval is how often a dns:/// element is re-resolved (default 30 s).
	ResolveInterval time.Duration
	// Resolver resolves dns:/// names (default SystemResolver).
	Resolver Resolver
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
	// TLS, when set, connects with TLS (set Certificates for mTLS); nil is plaintext. An empty
	// ServerName checks the target's host (for a dns:/// element: the name).
	TLS *tls.Config
	// Backoff is the reconnect schedule (zero fields: DefaultBackoff's).
	Backoff Backoff
	// DrainTimeout bounds how long a drain waits for the service to end the stream (default 5 s).
	DrainTimeout time.Duration
	// Logger gets the client's log lines (default: JSONLogger(os.Stderr, Verbose)).
	Logger Logger
	// Verbose logs every verdict (at debug).
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
	// Sessions counts Welcomes (over every service and reconnect).
	Sessions uint64
}

// Decided is the number of verdicts sent.
func (s Stats) Decided() uint64 { return s.Reply + s.Consume + s.Fallthrough }

// String is the counters of the summary line (docs/cli-contract.md), from decided to sessions.
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
	log     Logger
	stats   counters
	hello   *pb.Hello
}

// member is one service of the fleet: its gRPC target and the TLS name to check ("" : its host).
type member struct {
	addr       string
	serverName string
}

// Run connects to every service of o.Target and decides every request with handler,
// reconnecting each session on its own until ctx is cancelled; then it drains every session and
// returns the stats with a nil error. It returns a *RefusedError (errors.Is(err,
// ErrAuthentication) for a refused token) when a service refuses the session for good, after
// draining the others.
func Run(ctx context.Context, o Options, handler Handler) (Stats, error) {
	if handler == nil {
		return Stats{}, errors.New("client.Run: the handler is nil")
	}
	if o.Target == "" {
		o.Target = DefaultTarget
	}
	targets, err := parseTargets(o.Target)
	if err != nil {
		return Stats{}, err
	}
	if o.Name == "" {
		o.Name = "icmpfwd-client-go"
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 5 * time.Second
	}
	if o.ResolveInterval <= 0 {
		o.ResolveInterval = 30 * time.Second
	}
	if o.Resolver == nil {
		o.Resolver = SystemResolver
	}
	r := &runner{o: o, handler: handler, log: o.Logger}
	if r.log == nil {
		r.log = JSONLogger(os.Stderr, o.Verbose)
	}
	r.hello = helloOf(o)
	f := newFleet(ctx, r)
	for _, t := range targets {
		if t.dns() {
			f.watch(t)
		} else {
			f.add(member{addr: t.addr})
		}
	}
	err = f.wait()
	return r.stats.snapshot(), err
}

// fleet runs one reconnect loop per member; removing a member drains its session.
type fleet struct {
	r       *runner
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	members map[string]context.CancelFunc
	loops   sync.WaitGroup
	err     error
}

func newFleet(parent context.Context, r *runner) *fleet {
	ctx, cancel := context.WithCancel(parent)
	return &fleet{r: r, ctx: ctx, cancel: cancel, members: map[string]context.CancelFunc{}}
}

func (f *fleet) add(m member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.members[m.addr]; ok || f.ctx.Err() != nil {
		return
	}
	mctx, cancel := context.WithCancel(f.ctx)
	f.members[m.addr] = cancel
	f.loops.Add(1)
	go func() {
		defer f.loops.Done()
		if err := f.r.loop(mctx, m); err != nil {
			f.mu.Lock()
			if f.err == nil {
				f.err = err
			}
			f.mu.Unlock()
			f.cancel() // drains the others
		}
	}()
}

func (f *fleet) remove(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cancel, ok := f.members[addr]; ok {
		delete(f.members, addr)
		cancel()
	}
}

// watch keeps one member per address t.name resolves to, re-resolving every ResolveInterval.
func (f *fleet) watch(t target) {
	f.loops.Add(1)
	go func() {
		defer f.loops.Done()
		name := fmt.Sprintf("dns:///%s:%d", t.name, t.port)
		current := map[string]bool{}
		for {
			addrs, err := f.r.o.Resolver(f.ctx, t.name)
			if f.ctx.Err() != nil {
				return
			}
			if err != nil {
				f.r.log(LevelWarn, fmt.Sprintf("resolving %s failed; keeping %d sessions: %v", t.name, len(current), err), Fields{"target": name})
			} else {
				want := map[string]bool{}
				for _, a := range addrs {
					want[t.addrOf(a.Unmap())] = true
				}
				for _, a := range sortedKeys(want) {
					if !current[a] {
						f.r.log(LevelInfo, fmt.Sprintf("%s resolves to %s: opening a session", t.name, a), Fields{"target": a})
						f.add(member{addr: a, serverName: t.name})
					}
				}
				for _, a := range sortedKeys(current) {
					if !want[a] {
						f.r.log(LevelInfo, fmt.Sprintf("%s no longer resolves to %s: draining its session", t.name, a), Fields{"target": a})
						f.remove(a)
					}
				}
				current = want
			}
			tm := time.NewTimer(f.r.o.ResolveInterval)
			select {
			case <-f.ctx.Done():
				tm.Stop()
				return
			case <-tm.C:
			}
		}
	}()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// wait returns when every loop has ended (ctx cancelled and drained, or a refusal).
func (f *fleet) wait() error {
	<-f.ctx.Done()
	f.loops.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// loop is one service's sessions, reconnecting until ctx is cancelled (nil) or the service
// refuses the session for good (a *RefusedError).
func (r *runner) loop(ctx context.Context, m member) error {
	attempt := 0
	at := Fields{"target": m.addr}
	for {
		welcomed, err := r.session(ctx, m)
		if ctx.Err() != nil {
			return nil
		}
		if welcomed {
			attempt = 0
		}
		st := status.Convert(err)
		if err != nil && permanent(st.Code()) {
			return &RefusedError{Code: st.Code(), Message: st.Message()}
		}
		delay := r.o.Backoff.Delay(attempt, rand.Float64)
		attempt++
		why := "the service ended the stream"
		if err != nil {
			why = fmt.Sprintf("%s: %s", codeName(st.Code()), st.Message())
		}
		r.log(LevelWarn, fmt.Sprintf("disconnected from %s (%s); reconnecting in %v", m.addr, why, delay.Round(time.Millisecond)), at)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
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
func (r *runner) dial(m member) (*grpc.ClientConn, error) {
	target := m.addr
	opts := []grpc.DialOption{}
	if r.o.TLS != nil {
		cfg := r.o.TLS
		if cfg.ServerName == "" && m.serverName != "" {
			cfg = cfg.Clone()
			cfg.ServerName = m.serverName
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
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
	target string
	mu     sync.Mutex
	// session is the Welcome's session id ("" before it).
	session string
	call    pb.EchoForwarder_ConnectClient
	closed  bool
	// done is closed when the session ends.
	done chan struct{}
	// work: the batches being decided, each until its verdicts and its synthetic replies are sent.
	work map[uint64]chan struct{}
	next uint64
}

func newStream(target string) *stream {
	return &stream{target: target, done: make(chan struct{}), work: map[uint64]chan struct{}{}}
}

// fields are the log fields of a line about this session (and req, when not nil).
func (s *stream) fields(req *Request) Fields {
	s.mu.Lock()
	f := Fields{"target": s.target, "session": s.session}
	s.mu.Unlock()
	if req != nil {
		f["request_id"] = req.ID
		f["trace_id"] = req.TraceID
	}
	return f
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
func (r *runner) session(ctx context.Context, m member) (welcomed bool, err error) {
	conn, err := r.dial(m)
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
	s := newStream(m.addr)
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
				r.log(LevelWarn, fmt.Sprintf("requests still being decided after %v; cancelling", r.o.DrainTimeout), s.fields(nil))
				cancel()
				return
			}
		}
		r.log(LevelInfo, "draining", s.fields(nil))
		if err := s.send(&pb.ClientMessage{Message: &pb.ClientMessage_Drain{Drain: &pb.Drain{}}}); err != nil {
			cancel()
			return
		}
		select {
		case <-s.done:
		case <-t.C:
			r.log(LevelWarn, fmt.Sprintf("the service did not end the stream %v after Drain; cancelling", r.o.DrainTimeout), s.fields(nil))
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
			s.mu.Lock()
			s.session = w.GetSessionId()
			s.mu.Unlock()
			r.log(LevelInfo, fmt.Sprintf("welcome: session=%s max_in_flight=%d deadline=%v",
				w.GetSessionId(), w.GetMaxInFlight(), w.GetDeadline().AsDuration()), s.fields(nil))
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
				r.observe(s, msg.Requests)
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
			f := s.fields(nil)
			f["request_id"] = rj.GetRequestId()
			r.log(LevelWarn, fmt.Sprintf("rejected: request=%d %s: %s", rj.GetRequestId(), rj.GetReason(), rj.GetMessage()), f)
		case *pb.ServerMessage_Draining:
			r.log(LevelInfo, fmt.Sprintf("the service is draining (grace %v)", msg.Draining.GetGrace().AsDuration()), s.fields(nil))
		}
	}
}

func (r *runner) observe(s *stream, b *pb.EchoRequestBatch) {
	if d := b.GetObserverDrops(); d > 0 {
		r.log(LevelWarn, fmt.Sprintf("observer lost %d copies", d), s.fields(nil))
	}
	for _, e := range b.GetRequests() {
		r.stats.observed.Add(1)
		req := FromProto(e)
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.stats.errors.Add(1)
					r.log(LevelError, fmt.Sprintf("handler panicked: %s: %v", req, p), s.fields(req))
				}
			}()
			r.handler(req)
		}()
	}
}

// Decide runs the handler for one request: a panic or an invalid verdict is a fallthrough and
// an error log line with the request's trace id.
func (r *runner) decide(s *stream, req *Request) (v Verdict) {
	defer func() {
		if p := recover(); p != nil {
			r.stats.errors.Add(1)
			r.log(LevelError, fmt.Sprintf("handler panicked, falling through: %s: %v", req, p), s.fields(req))
			v = Fallthrough
		}
	}()
	v = r.handler(req)
	switch v.Action {
	case ActionReply, ActionConsume, ActionFallthrough:
		return v
	}
	r.stats.errors.Add(1)
	r.log(LevelError, fmt.Sprintf("the handler returned no verdict (action %d), falling through: %s", v.Action, req), s.fields(req))
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
			verdicts[i] = r.decide(s, parsed[i])
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			verdicts[i] = r.decide(s, parsed[i])
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
			r.log(LevelDebug, fmt.Sprintf("verdict %s: %s", v.Action, parsed[i]), s.fields(parsed[i]))
		}
	}
	err := s.send(&pb.ClientMessage{Message: &pb.ClientMessage_Verdicts{Verdicts: &pb.VerdictBatch{Verdicts: out}}})
	if err != nil {
		if !errors.Is(err, io.ErrClosedPipe) {
			r.log(LevelWarn, fmt.Sprintf("sending %d verdicts failed: %v", len(out), err), s.fields(nil))
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
	if syn.Await != nil {
		c := make(chan *Synthetic, 1)
		go func() { c <- syn.Await() }()
		select {
		case <-s.done:
			return
		case next := <-c:
			if next == nil {
				return
			}
			syn = *next
			syn.Await = nil
		}
	}
	delay := syn.Delay
	if syn.DelayFunc != nil {
		c := make(chan time.Duration, 1)
		go func() { c <- syn.DelayFunc() }()
		select {
		case <-s.done:
			return
		case delay = <-c:
		}
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-s.done:
		return
	case <-t.C:
	}
	reply := &pb.SyntheticReply{RequestId: req.ID, Payload: syn.Payload}
	if e := syn.Error; e != nil {
		reply.Error = &pb.SyntheticError{Type: pb.SyntheticErrorType(e.Type), Source: e.Source.String()}
	}
	m := &pb.ClientMessage{Message: &pb.ClientMessage_SyntheticReply{SyntheticReply: reply}}
	if err := s.send(m); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		r.log(LevelWarn, fmt.Sprintf("synthetic reply failed: %s: %v", req, err), s.fields(req))
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
