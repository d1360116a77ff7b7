package multicast

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

var (
	src16Once, src32Once sync.Once
	src16, src32         *testSource
)

// source16 and source32 are smaller images for tests where size matters
// less than time.
func source16() *testSource {
	src16Once.Do(func() { src16 = newTestSource(5, 16<<20) })
	return src16
}

func source32() *testSource {
	src32Once.Do(func() { src32 = newTestSource(6, 32<<20) })
	return src32
}

type lossRun struct {
	took  []time.Duration // per receiver
	stats []ReceiverStats
	send  SenderStats
}

// runSession sends src to len(drops) receivers, receiver i losing a share
// drops[i] of its datagrams, and checks every target. A receiver or the
// sender failing is returned; a wrong target fails the test.
func runSession(t *testing.T, src *testSource, rate int64, drops []float64) (lossRun, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g := testGroup()
	session := rand.Uint64()
	scfg := senderCfg(t, g, session)
	scfg.Rate = rate
	scfg.MinReceivers = len(drops)
	// Loss, not stragglers, is under test: a slow host (or -race) adds
	// loss of its own, which must not get the lossy receiver cut off.
	scfg.StragglerBudget = 0.3
	var sinks []*memSink
	var rchs []<-chan recvResult
	for _, p := range drops {
		m := &memSink{keep: true}
		rc := receiverCfg(t, g, session)
		if p > 0 {
			rc.dropForTest = dropRate(p)
		}
		sinks = append(sinks, m)
		rchs = append(rchs, goReceive(ctx, rc, m))
	}
	sch := goSend(ctx, scfg, src)
	var run lossRun
	for i, ch := range rchs {
		r := <-ch
		if r.err != nil {
			return run, fmt.Errorf("receiver %d (loss %.0f%%): %w", i, 100*drops[i], r.err)
		}
		sinks[i].check(t, fmt.Sprintf("receiver %d", i), src)
		run.took = append(run.took, r.stats.Duration)
		run.stats = append(run.stats, r.stats)
	}
	s := <-sch
	if s.err != nil {
		return run, fmt.Errorf("sender: %w", s.err)
	}
	run.send = s.stats
	return run, nil
}

// TestLoss loses 1% and 5% of one receiver's datagrams. It still gets
// every byte; the other two finish in about their lossless time: at a
// fixed rate, the data the sender sent until they were done is the image
// plus about the lossy receiver's share of repairs (a measure a loaded
// test host does not stretch), and their time stays near the lossless
// run's.
func TestLoss(t *testing.T) {
	src := source32()
	const rate = 100e6
	base, err := runSession(t, src, rate, []float64{0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	baseline := max(base.took[0], base.took[1], base.took[2])
	t.Logf("lossless: %v, sender %+v", baseline, base.send)
	for _, tc := range []struct {
		p    float64
		rate int64
	}{{0.01, rate}, {0.05, rate}, {0.05, 0}} {
		p := tc.p
		name := fmt.Sprintf("%.0f%%", 100*p)
		if tc.rate == 0 {
			name += " adaptive rate"
		}
		t.Run(name, func(t *testing.T) {
			// The receivers run in this process and share the host with
			// the sender and, under go test ./..., other packages' tests:
			// a starved run can lose and resend far more than it injects.
			// A second attempt tells that apart from a regression, which
			// fails both.
			var problems []string
			for attempt := 1; attempt <= 2; attempt++ {
				problems = lossProblems(t, src, tc.rate, p, baseline)
				if len(problems) == 0 {
					break
				}
				t.Logf("attempt %d: %s", attempt, strings.Join(problems, "; "))
			}
			for _, pr := range problems {
				t.Error(pr)
			}
		})
	}
}

// lossProblems runs a session with one receiver losing a share p of its
// datagrams and says what went wrong, if anything.
func lossProblems(t *testing.T, src *testSource, rate int64, p float64, baseline time.Duration) []string {
	run, err := runSession(t, src, rate, []float64{0, 0, p})
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	lossy := run.stats[2]
	t.Logf("others %v %v, lossy %v; lossy %+v; sender resent %.2f%%", run.took[0], run.took[1], run.took[2], lossy, 100*run.send.DuplicateRatio())
	if lossy.Lost == 0 || lossy.CutOff {
		problems = append(problems, fmt.Sprintf("lossy receiver: lost %d packets, cut off %v; want loss seen and no cut-off", lossy.Lost, lossy.CutOff))
	}
	// A host too slow for the rate (or -race) makes the "lossless"
	// receivers lose datagrams too (their Lost count); allow for their
	// own repairs on top of the lossy receiver's.
	blocks := float64(src.blocks())
	own := float64(run.stats[0].Lost+run.stats[1].Lost) / blocks
	for i := range 2 {
		seen := float64(run.stats[i].DataBlocks+run.stats[i].Duplicates) / blocks
		if limit := 1 + 1.5*p + 0.02 + 2*own; seen > limit {
			problems = append(problems, fmt.Sprintf("receiver %d without loss saw %.3f times the image's data before it was done, want at most %.3f (they lost %.2f%% themselves)", i, seen, limit, 100*own))
		}
		// Wall time on a shared host varies by 2-3x between runs; this
		// only catches stalls.
		if limit := 2*baseline + 2*time.Second; rate != 0 && run.took[i] > limit {
			problems = append(problems, fmt.Sprintf("receiver %d without loss took %v, lossless baseline %v (limit %v)", i, run.took[i], baseline, limit))
		}
	}
	if d := run.send.DuplicateRatio(); d > 3*p+0.01+2*own {
		problems = append(problems, fmt.Sprintf("sender resent %.1f%% of its data for a receiver losing %.0f%%", 100*d, 100*p))
	}
	return problems
}

// TestLateJoiner starts a third receiver when the first two hold 40% of
// the image; it gets everything, including what went by before it came.
func TestLateJoiner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := source32()
	g := testGroup()
	scfg := senderCfg(t, g, 0x1a7e)
	scfg.Rate = 100e6
	scfg.MinReceivers = 2
	a, b, c := &memSink{keep: true}, &memSink{keep: true}, &memSink{keep: true}
	ra := goReceive(ctx, receiverCfg(t, g, 0x1a7e), a)
	rb := goReceive(ctx, receiverCfg(t, g, 0x1a7e), b)
	sch := goSend(ctx, scfg, src)
	waitHeld(t, ctx, a, len(src.sizes)*4/10)
	rc := goReceive(ctx, receiverCfg(t, g, 0x1a7e), c)
	for name, ch := range map[string]<-chan recvResult{"a": ra, "b": rb, "late": rc} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("receiver %s: %v", name, r.err)
		}
		t.Logf("receiver %s: %v %+v", name, r.took, r.stats)
	}
	a.check(t, "a", src)
	b.check(t, "b", src)
	c.check(t, "late", src)
	s := <-sch
	if s.err != nil || s.stats.Completed != 3 {
		t.Fatalf("sender: %v, %d receivers completed, want 3", s.err, s.stats.Completed)
	}
}

// TestReceiverRestart kills a receiver at 30% and starts it again on the
// same target: it resumes, and no chunk is written twice.
func TestReceiverRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := source32()
	g := testGroup()
	scfg := senderCfg(t, g, 0x5e57)
	scfg.Rate = 100e6
	scfg.MinReceivers = 2
	a, b := &memSink{keep: true}, &memSink{keep: true}
	ra := goReceive(ctx, receiverCfg(t, g, 0x5e57), a)
	bctx, bcancel := context.WithCancel(ctx)
	rb := goReceive(bctx, receiverCfg(t, g, 0x5e57), b)
	sch := goSend(ctx, scfg, src)
	waitHeld(t, ctx, b, len(src.sizes)*3/10)
	bcancel()
	if r := <-rb; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("killed receiver returned %v, want context.Canceled", r.err)
	}
	before := b.heldCount()
	rb = goReceive(ctx, receiverCfg(t, g, 0x5e57), b)
	r := <-rb
	if r.err != nil {
		t.Fatalf("restarted receiver: %v", r.err)
	}
	t.Logf("restarted receiver: %+v", r.stats)
	if r.stats.Resumed != before || r.stats.Received != len(src.sizes)-before {
		t.Errorf("restarted receiver resumed %d and received %d chunks; it held %d of %d", r.stats.Resumed, r.stats.Received, before, len(src.sizes))
	}
	if r := <-ra; r.err != nil {
		t.Fatalf("receiver a: %v", r.err)
	}
	a.check(t, "a", src)
	b.check(t, "restarted", src)
	for i, n := range b.writes {
		if n != 1 {
			t.Errorf("chunk %d written %d times", i, n)
		}
	}
	s := <-sch
	if s.err != nil || s.stats.Completed != 2 || s.stats.Forgotten != 1 {
		t.Fatalf("sender: %v, completed %d (want 2), forgotten %d (want 1)", s.err, s.stats.Completed, s.stats.Forgotten)
	}
}

// TestSenderRestart kills the sender at 30% and starts another one on the
// same session after a pause; the receivers resume from what they hold.
func TestSenderRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := source32()
	g := testGroup()
	scfg := senderCfg(t, g, 0x5e4d)
	scfg.Rate = 100e6
	scfg.MinReceivers = 2
	a, b := &memSink{keep: true}, &memSink{keep: true}
	ra := goReceive(ctx, receiverCfg(t, g, 0x5e4d), a)
	rb := goReceive(ctx, receiverCfg(t, g, 0x5e4d), b)
	sctx, scancel := context.WithCancel(ctx)
	sch := goSend(sctx, scfg, src)
	waitHeld(t, ctx, a, len(src.sizes)*3/10)
	scancel()
	if s := <-sch; !errors.Is(s.err, context.Canceled) {
		t.Fatalf("killed sender returned %v", s.err)
	}
	time.Sleep(500 * time.Millisecond)
	sch = goSend(ctx, scfg, src)
	for name, ch := range map[string]<-chan recvResult{"a": ra, "b": rb} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("receiver %s: %v", name, r.err)
		}
		t.Logf("receiver %s: %+v", name, r.stats)
		if r.stats.SenderRestarts != 1 {
			t.Errorf("receiver %s saw %d sender restarts, want 1", name, r.stats.SenderRestarts)
		}
	}
	a.check(t, "a", src)
	b.check(t, "b", src)
	for _, m := range []*memSink{a, b} {
		for i, n := range m.writes {
			if n != 1 {
				t.Errorf("chunk %d written %d times", i, n)
			}
		}
	}
	s := <-sch
	if s.err != nil || s.stats.Completed != 2 {
		t.Fatalf("second sender: %v, %d completed", s.err, s.stats.Completed)
	}
	if total := int(s.stats.DataBlocks); total >= int(src.blocks())*9/10 {
		t.Errorf("second sender sent %d blocks of %d: the receivers did not resume", total, src.blocks())
	}
}

func (s *testSource) blocks() int {
	n := 0
	for _, sz := range s.sizes {
		n += (sz + 1415) / 1416
	}
	return n
}

// TestTwoSessions runs two sessions at once on the same port and
// different groups: neither sees the other's packets.
func TestTwoSessions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srcs := []*testSource{newTestSource(3, 24<<20), newTestSource(4, 24<<20)}
	g1 := testGroup()
	g2 := &net.UDPAddr{IP: net.IPv4(239, 78, g1.IP[14], g1.IP[15]), Port: g1.Port}
	type rcv struct {
		sink *memSink
		ch   <-chan recvResult
		src  *testSource
	}
	var rcvs []rcv
	var schs []<-chan sendResult
	for i, g := range []*net.UDPAddr{g1, g2} {
		session := uint64(0x2000 + i)
		for range 2 {
			m := &memSink{keep: true}
			rcvs = append(rcvs, rcv{m, goReceive(ctx, receiverCfg(t, g, session), m), srcs[i]})
		}
		scfg := senderCfg(t, g, session)
		scfg.Rate = 60e6
		scfg.MinReceivers = 2
		schs = append(schs, goSend(ctx, scfg, srcs[i]))
	}
	for i, r := range rcvs {
		res := <-r.ch
		if res.err != nil {
			t.Fatalf("receiver %d: %v", i, res.err)
		}
		r.sink.check(t, fmt.Sprintf("receiver %d", i), r.src)
		if res.stats.Strays != 0 || res.stats.Forged != 0 {
			t.Errorf("receiver %d saw %d stray and %d forged packets; sessions leak into each other", i, res.stats.Strays, res.stats.Forged)
		}
	}
	for i, ch := range schs {
		if s := <-ch; s.err != nil || s.stats.Strays != 0 || s.stats.Completed != 2 {
			t.Errorf("sender %d: %v, strays %d, completed %d", i, s.err, s.stats.Strays, s.stats.Completed)
		}
	}
}

// injector sends packets to both ports of a group from a plain UDP socket
// on loopback (TTL 0).
type injector struct {
	pc   *ipv4.PacketConn
	c    *net.UDPConn
	data *net.UDPAddr
	ctl  *net.UDPAddr
}

func newInjector(t *testing.T, g *net.UDPAddr) *injector {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lo, err := resolveInterface("", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetMulticastTTL(0); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetMulticastLoopback(true); err != nil {
		t.Fatal(err)
	}
	return &injector{pc: pc, c: c, data: g, ctl: &net.UDPAddr{IP: g.IP, Port: g.Port + 1}}
}

// TestForgedAndStray injects, during a transfer, DATA and REQUEST packets
// sealed with a wrong key (forged), valid packets of another session
// (stray) and garbage into both ports. All are dropped and counted; the
// transfer is still exact.
func TestForgedAndStray(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := source16()
	g := testGroup()
	const session = 0xf00d
	scfg := senderCfg(t, g, session)
	scfg.Rate = 40e6
	scfg.MinReceivers = 2
	a, b := &memSink{keep: true}, &memSink{keep: true}
	ra := goReceive(ctx, receiverCfg(t, g, session), a)
	rb := goReceive(ctx, receiverCfg(t, g, session), b)
	sch := goSend(ctx, scfg, src)

	inj := newInjector(t, g)
	forger := newAuth(session, []byte("not the session key, not at all"))
	stray := newAuth(session+1, testKey)
	var sent atomic.Int64
	injCtx, stopInj := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bs := blockSizeFor(DefaultMTU)
		tag := imageTag(sha256Of(src.meta))
		for i := 0; injCtx.Err() == nil; i++ {
			buf := make([]byte, DefaultMTU-ipUDPLen)
			d := dataHdr{kind: kindChunk, block: 0, obj: uint32(i % len(src.sizes)), size: uint32(src.sizes[i%len(src.sizes)]), tag: tag}
			d.encode(buf[headerLen:])
			n := min(bs, int(d.size))
			for j := range n {
				buf[headerLen+dataHdrLen+j] = 0xee
			}
			var w reqWriter
			rq := make([]byte, 64)
			w.reset(rq[headerLen:], tag)
			w.add(kindChunk, 0, uint32(i%len(src.sizes)), nil)
			pkts := []struct {
				p   []byte
				dst *net.UDPAddr
			}{
				{forger.seal(buf, typeData, 0xbad, uint32(i), dataHdrLen+n), inj.data},
				{stray.seal(append([]byte(nil), buf...), typeData, 0xbad, uint32(i), dataHdrLen+n), inj.data},
				{forger.seal(rq, typeRequest, 0xbad, uint32(i), w.n), inj.ctl},
				{stray.seal(append([]byte(nil), rq...), typeRequest, 0xbad, uint32(i), w.n), inj.ctl},
				{[]byte("garbage, not a diskcast packet at all......"), inj.data},
				{[]byte("garbage, not a diskcast packet at all......"), inj.ctl},
			}
			for _, p := range pkts {
				if _, err := inj.pc.WriteTo(p.p, nil, p.dst); err == nil {
					sent.Add(1)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for name, ch := range map[string]<-chan recvResult{"a": ra, "b": rb} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("receiver %s: %v", name, r.err)
		}
		t.Logf("receiver %s: %+v", name, r.stats)
		if r.stats.Forged == 0 || r.stats.Strays == 0 || r.stats.Malformed == 0 {
			t.Errorf("receiver %s counted forged %d, strays %d, malformed %d; want all > 0", name, r.stats.Forged, r.stats.Strays, r.stats.Malformed)
		}
	}
	stopInj()
	<-done
	a.check(t, "a", src)
	b.check(t, "b", src)
	s := <-sch
	if s.err != nil {
		t.Fatalf("sender: %v", s.err)
	}
	t.Logf("injected %d packets; sender %+v", sent.Load(), s.stats)
	if s.stats.Forged == 0 || s.stats.Strays == 0 || s.stats.Malformed == 0 || s.stats.Receivers != 2 {
		t.Errorf("sender counted forged %d, strays %d, malformed %d, receivers %d", s.stats.Forged, s.stats.Strays, s.stats.Malformed, s.stats.Receivers)
	}
}

// TestStraggler loses 30% of one receiver's datagrams: the sender cuts it
// off; it completes through the repair hook, or fails with ErrStraggler
// without one. A receiver that never hears it was cut off (every NOTICE
// lost) turns to the repair hook when the sender ends.
func TestStraggler(t *testing.T) {
	src := source16()
	for _, tc := range []struct {
		name                    string
		withRepair, dropNotices bool
	}{{"repair", true, false}, {"no repair", false, false}, {"repair, notices lost", true, true}} {
		withRepair := tc.withRepair
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			g := testGroup()
			scfg := senderCfg(t, g, 0x5105)
			scfg.Rate = 30e6
			scfg.MinReceivers = 3
			scfg.StragglerBudget = 0.05
			var sinks []*memSink
			var chs []<-chan recvResult
			var repairs atomic.Int64
			for i := range 3 {
				m := &memSink{keep: true}
				rc := receiverCfg(t, g, 0x5105)
				if i == 2 {
					rc.dropForTest = dropRate(0.3)
					if tc.dropNotices {
						rc.dropForTest = func(p []byte) bool { return p[5] == byte(typeNotice) || rand.Float64() < 0.3 }
					}
					rc.StragglerLimit = 2 * time.Second
					if withRepair {
						rc.Repair = func(ctx context.Context, i int) ([]byte, error) {
							repairs.Add(1)
							return append([]byte(nil), src.chunk(i)...), nil
						}
					}
				}
				sinks = append(sinks, m)
				chs = append(chs, goReceive(ctx, rc, m))
			}
			sch := goSend(ctx, scfg, src)
			var took [3]time.Duration
			for i, ch := range chs {
				r := <-ch
				took[i] = r.took
				t.Logf("receiver %d: %v %v %+v", i, r.took, r.err, r.stats)
				switch {
				case i < 2 && r.err != nil:
					t.Fatalf("receiver %d: %v", i, r.err)
				case i < 2:
					sinks[i].check(t, fmt.Sprintf("receiver %d", i), src)
				case r.stats.CutOff == tc.dropNotices:
					t.Errorf("lossy receiver: cut off %v, yet it should have heard so %v", r.stats.CutOff, !tc.dropNotices)
				case withRepair && (r.err != nil || r.stats.Repaired == 0):
					t.Errorf("lossy receiver with repair: %v, %d chunks repaired", r.err, r.stats.Repaired)
				case withRepair:
					sinks[i].check(t, "repaired receiver", src)
				case !errors.Is(r.err, ErrStraggler):
					t.Errorf("lossy receiver without repair returned %v, want ErrStraggler", r.err)
				}
			}
			s := <-sch
			if s.err != nil || s.stats.CutOff != 1 || s.stats.Completed != 2 {
				t.Fatalf("sender: %v, cut off %d (want 1), completed %d (want 2)", s.err, s.stats.CutOff, s.stats.Completed)
			}
		})
	}
}

// TestStartPolicy checks that the sender waits as told before serving
// chunks.
func TestStartPolicy(t *testing.T) {
	src := source16()
	tests := []struct {
		name         string
		minReceivers int
		minWait      time.Duration
		maxWait      time.Duration
		wantAtLeast  time.Duration
	}{
		{"max wait without enough receivers", 2, 0, 700 * time.Millisecond, 700 * time.Millisecond},
		{"min wait", 1, 600 * time.Millisecond, 0, 600 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			g := testGroup()
			scfg := senderCfg(t, g, 0x57a7)
			scfg.MinReceivers, scfg.MinWait, scfg.MaxWait = tc.minReceivers, tc.minWait, tc.maxWait
			scfg.Rate = 200e6
			m := &memSink{}
			var first atomic.Int64
			t0 := time.Now()
			m.onChunk = func(int) { first.CompareAndSwap(0, int64(time.Since(t0))) }
			rch := goReceive(ctx, receiverCfg(t, g, 0x57a7), m)
			sch := goSend(ctx, scfg, src)
			if r := <-rch; r.err != nil {
				t.Fatalf("receiver: %v", r.err)
			}
			if s := <-sch; s.err != nil {
				t.Fatalf("sender: %v", s.err)
			}
			if got := time.Duration(first.Load()); got < tc.wantAtLeast {
				t.Errorf("first chunk written after %v; the sender should have waited %v", got, tc.wantAtLeast)
			}
		})
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("sender idle", func(t *testing.T) {
		scfg := senderCfg(t, testGroup(), 1)
		scfg.IdleTimeout = 300 * time.Millisecond
		t0 := time.Now()
		_, err := Send(context.Background(), scfg, source16())
		if !errors.Is(err, ErrIdle) || time.Since(t0) > 3*time.Second {
			t.Fatalf("Send without receivers: %v after %v, want ErrIdle after about 300ms", err, time.Since(t0))
		}
	})
	t.Run("wrong session key", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g := testGroup()
		scfg := senderCfg(t, g, 7)
		scfg.IdleTimeout = 2 * time.Second
		sch := goSend(ctx, scfg, source16())
		rcfg := receiverCfg(t, g, 7)
		rcfg.Key = []byte("another key for the same session")
		rcfg.SenderTimeout = 500 * time.Millisecond
		st, err := Receive(ctx, rcfg, &memSink{})
		if !errors.Is(err, ErrSenderLost) || st.Forged == 0 || !strings.Contains(err.Error(), "session key") {
			t.Fatalf("Receive with a wrong key: %v, %d forged packets; want ErrSenderLost naming the key", err, st.Forged)
		}
		cancel()
		<-sch
	})
	t.Run("sender lost", func(t *testing.T) {
		rcfg := receiverCfg(t, testGroup(), 1)
		rcfg.SenderTimeout = 300 * time.Millisecond
		_, err := Receive(context.Background(), rcfg, &memSink{})
		if !errors.Is(err, ErrSenderLost) {
			t.Fatalf("Receive without sender: %v, want ErrSenderLost", err)
		}
	})
}

func TestBadConfig(t *testing.T) {
	g := testGroup()
	tests := []struct {
		name string
		mod  func(s *SenderConfig, r *ReceiverConfig)
	}{
		{"no group", func(s *SenderConfig, r *ReceiverConfig) { s.Group, r.Group = nil, nil }},
		{"unicast group", func(s *SenderConfig, r *ReceiverConfig) {
			u := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
			s.Group, r.Group = u, u
		}},
		{"control port beyond 65535", func(s *SenderConfig, r *ReceiverConfig) {
			u := &net.UDPAddr{IP: g.IP, Port: 65535}
			s.Group, r.Group = u, u
		}},
		{"short key", func(s *SenderConfig, r *ReceiverConfig) { s.Key, r.Key = []byte("short"), []byte("short") }},
		{"unknown interface", func(s *SenderConfig, r *ReceiverConfig) { s.Interface, r.Interface = "nosuch0", "nosuch0" }},
		{"address of no interface", func(s *SenderConfig, r *ReceiverConfig) {
			ip := net.IPv4(203, 0, 113, 254) // TEST-NET-3: on no interface
			s.LocalAddr, r.LocalAddr = ip, ip
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, r := senderCfg(t, g, 1), receiverCfg(t, g, 1)
			tc.mod(&s, &r)
			if _, err := Send(context.Background(), s, source16()); !errors.Is(err, ErrConfig) {
				t.Errorf("Send: %v, want ErrConfig", err)
			}
			if _, err := Receive(context.Background(), r, &memSink{}); !errors.Is(err, ErrConfig) {
				t.Errorf("Receive: %v, want ErrConfig", err)
			}
		})
	}
}

// badSink fails as told.
type badSink struct {
	memSink
	metaErr  error
	badChunk int
	failures atomic.Int32
	failErr  error
}

func (b *badSink) Meta(blob []byte) (int, func(int) bool, error) {
	if b.metaErr != nil {
		return 0, nil, b.metaErr
	}
	return b.memSink.Meta(blob)
}

func (b *badSink) Chunk(i int, p []byte) error {
	if i == b.badChunk && b.failures.Add(1) == 1 {
		return b.failErr
	}
	return b.memSink.Chunk(i, p)
}

// TestFailures covers errors of the layers above: a chunk that fails
// verification once is fetched again; a metadata or write error ends the
// receiver; a read error ends the sender.
func TestFailures(t *testing.T) {
	src := source16()
	run := func(t *testing.T, sink ChunkSink, s *testSource) (ReceiverStats, error, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		g := testGroup()
		scfg := senderCfg(t, g, 0xfa11)
		scfg.Rate = 100e6
		scfg.IdleTimeout = 2 * time.Second
		rch := goReceive(ctx, receiverCfg(t, g, 0xfa11), sink)
		sch := goSend(ctx, scfg, s)
		// Whichever side fails first ends the other.
		var r recvResult
		var sr sendResult
		select {
		case r = <-rch:
			cancel()
			sr = <-sch
		case sr = <-sch:
			if sr.err != nil {
				cancel()
			}
			r = <-rch
		}
		return r.stats, r.err, sr.err
	}
	t.Run("checksum mismatch once", func(t *testing.T) {
		b := &badSink{memSink: memSink{keep: true}, badChunk: 9, failErr: fmt.Errorf("chunk 9: %w", ErrChecksum)}
		st, err, _ := run(t, b, src)
		if err != nil || st.ChecksumFailures != 1 {
			t.Fatalf("receiver: %v, %d checksum failures (want 1)", err, st.ChecksumFailures)
		}
		b.check(t, "target", src)
	})
	t.Run("write error", func(t *testing.T) {
		b := &badSink{badChunk: 9, failErr: errors.New("disk on fire")}
		_, err, _ := run(t, b, src)
		if err == nil || !errors.Is(err, b.failErr) {
			t.Fatalf("receiver: %v, want the write error", err)
		}
	})
	t.Run("metadata rejected", func(t *testing.T) {
		b := &badSink{badChunk: -1, metaErr: errors.New("target too small")}
		_, err, _ := run(t, b, src)
		if !errors.Is(err, ErrMetadata) || !errors.Is(err, b.metaErr) {
			t.Fatalf("receiver: %v, want ErrMetadata wrapping the sink's error", err)
		}
	})
	t.Run("source read error", func(t *testing.T) {
		s := *src
		s.readErr = func(i int) error {
			if i == 20 {
				return errors.New("bad sector")
			}
			return nil
		}
		_, _, serr := run(t, &memSink{}, &s)
		if !errors.Is(serr, ErrSource) {
			t.Fatalf("sender: %v, want ErrSource", serr)
		}
	})
}

func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestNoSpin checks that neither side burns CPU while it waits, and that
// a low fixed rate is kept: the process's CPU time is measured, which a
// loaded host does not inflate the way it does wall time.
func TestNoSpin(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g := testGroup()
		scfg := senderCfg(t, g, 0x1d1e)
		scfg.MinReceivers = 5 // never met
		rcfg := receiverCfg(t, testGroup(), 0x1d1f)
		before := cpuTime(t)
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		defer scancel()
		sch := goSend(sctx, scfg, source16())
		rch := goReceive(sctx, rcfg, &memSink{})
		<-sch
		<-rch
		if used := cpuTime(t) - before; used > 150*time.Millisecond {
			t.Errorf("an idle sender and receiver used %v of CPU in 1 s", used)
		}
	})
	t.Run("paced", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		src := newTestSource(8, 4<<20)
		g := testGroup()
		scfg := senderCfg(t, g, 0x1d20)
		scfg.Rate = 4e6
		var progress atomic.Int32
		scfg.Progress = func(SenderStats) { progress.Add(1) }
		rcfg := receiverCfg(t, g, 0x1d20)
		rcfg.Progress = func(ReceiverStats) { progress.Add(1) }
		m := &memSink{keep: true}
		before := cpuTime(t)
		rch := goReceive(ctx, rcfg, m)
		sch := goSend(ctx, scfg, src)
		r := <-rch
		s := <-sch
		used := cpuTime(t) - before
		if r.err != nil || s.err != nil {
			t.Fatalf("receiver %v, sender %v", r.err, s.err)
		}
		m.check(t, "receiver", src)
		want := time.Duration(float64(s.stats.Bytes) / 4e6 * float64(time.Second))
		t.Logf("took %v (%v at the rate), %v of CPU, sender %+v", r.took, want, used, s.stats)
		if r.took < want*9/10 {
			t.Errorf("4 MiB at 4 MB/s took %v, the rate allows no less than %v", r.took, want)
		}
		if used > 600*time.Millisecond {
			t.Errorf("a 4 MB/s transfer of 4 MiB used %v of CPU", used)
		}
		if progress.Load() < 2 {
			t.Errorf("progress reported %d times", progress.Load())
		}
	})
}

// TestImageChanged restarts the sender with another image on the same
// session: a receiver that holds part of the first one refuses it.
func TestImageChanged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := testGroup()
	scfg := senderCfg(t, g, 0xc4a6)
	scfg.Rate = 50e6
	m := &memSink{}
	rch := goReceive(ctx, receiverCfg(t, g, 0xc4a6), m)
	sctx, scancel := context.WithCancel(ctx)
	sch := goSend(sctx, scfg, source16())
	waitHeld(t, ctx, m, 3)
	scancel()
	<-sch
	scfg.IdleTimeout = time.Second
	sch = goSend(ctx, scfg, newTestSource(9, 4<<20))
	if r := <-rch; !errors.Is(r.err, ErrImageChanged) {
		t.Fatalf("receiver: %v, want ErrImageChanged", r.err)
	}
	<-sch
}
