package multicast

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ChunkSource is the image a sender serves, as the core describes it.
// ReadChunk may be called from the sender's goroutine only, one call at a
// time.
type ChunkSource interface {
	// Meta returns the opaque metadata blob (for a .dci: header, index
	// and trailer) that receivers get first.
	Meta() []byte
	NumChunks() int
	// ChunkSize returns the stored size of chunk i.
	ChunkSize(i int) int
	// ReadChunk fills p (ChunkSize(i) bytes) with the stored payload of
	// chunk i.
	ReadChunk(i int, p []byte) error
}

// SenderConfig configures Send. Zero values of the optional fields take
// the defaults of docs/PROTOCOL.md.
type SenderConfig struct {
	// Group is the multicast group and data port P; the control port is
	// P+1.
	Group *net.UDPAddr
	// Interface names the interface to send on; LocalAddr selects it by
	// one of its addresses. Both empty: the kernel's route for the group.
	Interface string
	LocalAddr net.IP
	// TTL of multicast packets; 0 means 1. HostOnly sets TTL 0: packets
	// never leave this host (tests, demos).
	TTL      int
	HostOnly bool

	SessionID uint64
	// Key is the per-session secret (at least 16 bytes; 32 recommended).
	Key []byte

	// Rate caps the send rate in bytes/s of IP packets; 0 selects the
	// adaptive rate, between MinRate (default 1 MB/s) and MaxRate
	// (default 1.25 GB/s), starting at InitialRate (default 64 MB/s).
	Rate, MinRate, MaxRate, InitialRate int64

	// Start policy, as udpcast: start when MinReceivers (at least 1) are
	// known and MinWait has passed, or when MaxWait (if set) has passed
	// with at least one receiver.
	MinReceivers     int
	MinWait, MaxWait time.Duration
	// IdleTimeout ends the session when no receiver is known for this
	// long (0: never).
	IdleTimeout time.Duration
	// ReceiverTimeout forgets a receiver silent for this long (default 5 s).
	ReceiverTimeout time.Duration
	// StragglerBudget is the share of the image's blocks a receiver may
	// have sent again for it before it may be cut off (default 0.10;
	// negative: never cut off).
	StragglerBudget float64
	// MTU sizes DATA packets (default 1500).
	MTU int
	// WriteBuffer is the socket send buffer in bytes (default 4 MiB).
	WriteBuffer int

	Logger hclog.Logger
	// Progress, if set, is called about twice a second from the sending
	// goroutine; it must return quickly.
	Progress func(SenderStats)
}

// SenderStats counts what a sender did (docs/PROTOCOL.md, "What is
// counted").
type SenderStats struct {
	Duration  time.Duration
	Receivers int // distinct receivers heard
	Completed int // receivers that reported done
	CutOff    int // receivers cut off as stragglers
	Forgotten int // receivers that left or went silent before done

	Packets      uint64 // datagrams sent
	Bytes        uint64 // IP bytes sent
	DataBlocks   uint64 // DATA packets sent
	ResentBlocks uint64 // DATA packets of objects sent in full before
	Passes       uint64 // passes over objects

	Requests        uint64 // REQUEST packets accepted
	RequestedBlocks uint64
	MergedBlocks    uint64 // requested blocks that were already pending
	CrossedRequests uint64 // request entries answered by a pass that began after the requester's newest packet
	IgnoredRequests uint64 // REQUESTs of cut-off receivers or of another image
	ControlDropped  uint64 // control packets dropped because the sender was behind

	Idle     time.Duration // time running with nothing to send (waiting for requests)
	Rate     int64         // current send rate, bytes/s
	Backoffs int           // adaptive rate decreases
	Undos    int           // back-offs undone because the loss did not depend on the rate

	Malformed, Strays, Forged uint64
}

// DuplicateRatio is the share of data packets that were sent again.
func (s SenderStats) DuplicateRatio() float64 {
	if s.DataBlocks == 0 {
		return 0
	}
	return float64(s.ResentBlocks) / float64(s.DataBlocks)
}

// Fixed timers (docs/PROTOCOL.md, "Timers and defaults").
const (
	beaconInterval   = 100 * time.Millisecond
	lingerTime       = 300 * time.Millisecond
	cutNoticeEvery   = 250 * time.Millisecond
	progressInterval = 500 * time.Millisecond
	scanInterval     = 10 * time.Millisecond
	sendBatch        = 64
	ctrlQueue        = 4096
	chunkCache       = 4
	minLossSample    = 256
	stragglerFactor  = 4
	endingBeacons    = 3
)

// statusInterval is the STATUS interval announced for n receivers.
func statusInterval(n int) time.Duration {
	return min(max(time.Duration(n)*10*time.Millisecond, 100*time.Millisecond), 2*time.Second)
}

// counters are incremented by reader goroutines.
type counters struct {
	malformed, strays, forged, dropped atomic.Uint64
}

// count counts a packet that auth.open refused.
func (c *counters) count(err error) {
	switch err {
	case errStray:
		c.strays.Add(1)
	case errForged:
		c.forged.Add(1)
	default:
		c.malformed.Add(1)
	}
}

// ctrlMsg is a decoded STATUS or REQUEST.
type ctrlMsg struct {
	from uint32
	typ  ptype
	st   status
	req  request
}

type sobj struct {
	size      int
	nblocks   int
	pending   bitmap
	npend     int
	queued    bool
	full      bool          // sent in full at least once
	fullStart time.Duration // start of the last pass that sent every block
	fullSeq   uint32        // sequence number of its first packet
	passStart time.Duration
	passSeq   uint32
	passSent  int
}

type srcv struct {
	id          uint32
	firstHeard  time.Duration
	lastHeard   time.Duration
	done, cut   bool
	left        bool
	lastCutNote time.Duration
	charge      int64
	held, total uint32

	baseOK             bool
	baseRecv, baseExp  uint64
	baseAt             time.Duration
	loss               float64
	lossFrom, lossAt   time.Duration
	haveLoss           bool
	lastStragglerCheck time.Duration
}

type cachedChunk struct {
	obj int
	buf []byte
}

type sender struct {
	cfg  SenderConfig
	log  hclog.Logger
	src  ChunkSource
	conn *mconn
	auth *auth
	id   uint32
	seq  uint32
	t0   time.Time

	meta      []byte
	metaHash  [32]byte
	tag       uint32
	blockSize int
	nMeta     int
	objs      []sobj
	imgBlocks int64
	maxChunk  int

	metaQ, repairQ, freshQ queue
	cur                    int // object of the current pass, -1 none
	curNext                int
	curData                []byte
	cache                  [chunkCache]cachedChunk
	cacheNext              int
	bitmaps                map[int][]bitmap // free pending bitmaps by word count
	pendBlocks             int64

	state    uint8
	rcvs     map[uint32]*srcv
	notices  []noticeEnt
	ctl      *rateCtl
	pace     pacer
	pktBytes float64 // IP bytes of a full DATA packet

	ctrl  chan ctrlMsg
	cnt   counters
	stats SenderStats

	pkts    [][]byte // DATA datagram buffers
	out     [][]byte
	ctlBuf  []byte
	backlog bool // the pacer limited sending in this epoch

	lingerAt, idleSince             time.Duration
	lastBeacon, lastEpoch, lastProg time.Duration
	lastScan                        time.Duration
	active                          int  // receivers neither done nor cut off, as of the last scan
	dirty                           bool // a receiver joined, left, finished or was cut off since
}

type queue struct {
	q    []int
	head int
}

func (q *queue) push(i int) { q.q = append(q.q, i) }
func (q *queue) len() int   { return len(q.q) - q.head }
func (q *queue) pop() int {
	i := q.q[q.head]
	q.head++
	if q.head > 1024 && q.head*2 > len(q.q) {
		q.q = append(q.q[:0], q.q[q.head:]...)
		q.head = 0
	}
	return i
}

// Send serves src on cfg.Group until every receiver is done, the session
// idles out or ctx is cancelled. Cancelling ctx stops at once without
// telling receivers, which then wait for a sender with the same image.
func Send(ctx context.Context, cfg SenderConfig, src ChunkSource) (SenderStats, error) {
	s, err := newSender(ctx, cfg, src)
	if err != nil {
		return SenderStats{}, err
	}
	var wg sync.WaitGroup
	wg.Go(s.readCtrl)
	stats, err := s.run(ctx)
	s.conn.close()
	wg.Wait()
	return stats, err
}

func checkCommon(group *net.UDPAddr, key []byte) error {
	if group == nil || group.IP.To4() == nil || !group.IP.IsMulticast() {
		return fmt.Errorf("%w: group %v is not an IPv4 multicast address", ErrConfig, group)
	}
	if group.Port <= 0 || group.Port >= 65535 {
		return fmt.Errorf("%w: port %d: need 1..65534 (the control port is port+1)", ErrConfig, group.Port)
	}
	if len(key) < 16 {
		return fmt.Errorf("%w: session key of %d bytes; need at least 16 (32 recommended)", ErrConfig, len(key))
	}
	return nil
}

func ttlOf(ttl int, hostOnly bool) int {
	switch {
	case hostOnly:
		return 0
	case ttl <= 0:
		return 1
	}
	return ttl
}

func newSender(ctx context.Context, cfg SenderConfig, src ChunkSource) (*sender, error) {
	if err := checkCommon(cfg.Group, cfg.Key); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 9000 {
		return nil, fmt.Errorf("%w: MTU %d outside 576..9000", ErrConfig, cfg.MTU)
	}
	if cfg.ReceiverTimeout <= 0 {
		cfg.ReceiverTimeout = 5 * time.Second
	}
	if cfg.StragglerBudget == 0 {
		cfg.StragglerBudget = 0.10
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = 1e6
	}
	if cfg.MaxRate <= 0 {
		cfg.MaxRate = 1.25e9
	}
	if cfg.InitialRate <= 0 {
		cfg.InitialRate = 64e6
	}
	if cfg.WriteBuffer <= 0 {
		cfg.WriteBuffer = 4 << 20
	}
	if cfg.Rate < 0 || cfg.MinRate > cfg.MaxRate {
		return nil, fmt.Errorf("%w: rate %d, min %d, max %d", ErrConfig, cfg.Rate, cfg.MinRate, cfg.MaxRate)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &sender{
		cfg: cfg, log: log.Named("multicast-sender"), src: src,
		auth: newAuth(cfg.SessionID, cfg.Key), id: nonzeroID(),
		blockSize: blockSizeFor(cfg.MTU), cur: -1,
		bitmaps: map[int][]bitmap{}, rcvs: map[uint32]*srcv{},
		ctrl: make(chan ctrlMsg, ctrlQueue), state: senderWaiting,
	}
	s.meta = src.Meta()
	if len(s.meta) == 0 || len(s.meta) > maxMeta {
		return nil, fmt.Errorf("%w: metadata of %d bytes; need 1..%d", ErrSource, len(s.meta), maxMeta)
	}
	s.metaHash = sha256.Sum256(s.meta)
	s.tag = imageTag(s.metaHash)
	n := src.NumChunks()
	if n < 0 || n > 1<<31-1 {
		return nil, fmt.Errorf("%w: %d chunks", ErrSource, n)
	}
	s.nMeta = (len(s.meta) + metaSegment - 1) / metaSegment
	s.objs = make([]sobj, s.nMeta+n)
	for i := range s.nMeta {
		sz := min(metaSegment, len(s.meta)-i*metaSegment)
		s.objs[i].size, s.objs[i].nblocks = sz, s.blocks(sz)
	}
	for i := range n {
		sz := src.ChunkSize(i)
		if sz <= 0 || sz > maxBlocks*s.blockSize {
			return nil, fmt.Errorf("%w: chunk %d: stored size %d outside 1..%d", ErrSource, i, sz, maxBlocks*s.blockSize)
		}
		o := &s.objs[s.nMeta+i]
		o.size, o.nblocks = sz, s.blocks(sz)
		s.imgBlocks += int64(o.nblocks)
		s.maxChunk = max(s.maxChunk, sz)
	}
	s.pktBytes = float64(cfg.MTU)
	s.ctl = newRateCtl(float64(cfg.Rate), float64(cfg.InitialRate), float64(cfg.MinRate), float64(cfg.MaxRate))
	s.pace.setRate(s.ctl.rate, s.pktBytes*float64(s.batchFor(s.ctl.rate)))
	s.pkts = make([][]byte, sendBatch)
	for i := range s.pkts {
		s.pkts[i] = make([]byte, cfg.MTU-ipUDPLen)
	}
	s.out = make([][]byte, 0, sendBatch)
	s.ctlBuf = make([]byte, maxControl)

	ifi, err := resolveInterface(cfg.Interface, cfg.LocalAddr)
	if err != nil {
		return nil, err
	}
	s.conn, err = openConn(ctx, sockOpts{
		group: cfg.Group.IP, port: cfg.Group.Port + 1,
		dst: &net.UDPAddr{IP: cfg.Group.IP, Port: cfg.Group.Port},
		ifi: ifi, ttl: ttlOf(cfg.TTL, cfg.HostOnly),
		rcvbuf: 4 << 20, sndbuf: cfg.WriteBuffer, batch: 32, bufSize: maxControl + 1,
	})
	if err != nil {
		return nil, err
	}
	s.log.Debug("session", "group", cfg.Group, "session", fmt.Sprintf("%#x", cfg.SessionID),
		"instance", fmt.Sprintf("%#x", s.id), "chunks", n, "metadata", len(s.meta),
		"block", s.blockSize, "sndbuf", s.conn.sndbuf, "rcvbuf", s.conn.rcvbuf)
	return s, nil
}

func nonzeroID() uint32 {
	for {
		if id := rand.Uint32(); id != 0 {
			return id
		}
	}
}

func (s *sender) blocks(size int) int { return (size + s.blockSize - 1) / s.blockSize }

// batchFor is the number of packets sent per batch at a rate: about
// batchTime's worth. Shorter batches would make low rates smoother but
// cost a wake-up of the sender, and of every receiver, per batch: at
// 100 Mbit/s a millisecond is 9 datagrams, and the wake-ups cost more
// than the data.
func (s *sender) batchFor(rate float64) int {
	return min(max(int(rate*batchTime.Seconds()/s.pktBytes), 1), sendBatch)
}

func (s *sender) now() time.Duration { return time.Since(s.t0) }

// readCtrl receives STATUS and REQUEST packets and queues them for run.
func (s *sender) readCtrl() {
	a := newAuth(s.cfg.SessionID, s.cfg.Key)
	for {
		n, err := s.conn.readBatch(time.Now().Add(time.Second))
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("control socket", "error", err)
			}
			return
		}
		for i := range n {
			pkt := s.conn.msg(i)
			if pkt == nil {
				s.cnt.malformed.Add(1)
				continue
			}
			h, p, err := a.open(pkt)
			if err != nil {
				s.cnt.count(err)
				continue
			}
			m := ctrlMsg{from: h.node, typ: h.typ}
			switch h.typ {
			case typeStatus:
				m.st, err = decodeStatus(p)
			case typeRequest:
				m.req, err = decodeRequest(p)
			default:
				err = fmt.Errorf("%w: %s on the control port", errMalformed, h.typ)
			}
			if err != nil {
				s.cnt.malformed.Add(1)
				s.log.Trace("drop", "from", h.node, "error", err)
				continue
			}
			select {
			case s.ctrl <- m:
			default:
				s.cnt.dropped.Add(1)
			}
		}
	}
}

func (s *sender) run(ctx context.Context) (SenderStats, error) {
	s.t0 = time.Now()
	s.lastProg = -progressInterval
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	s.sendBeacon(0)
	for {
		if err := ctx.Err(); err != nil {
			return s.snapshot(), err
		}
		now := s.now()
	drain:
		for {
			select {
			case m := <-s.ctrl:
				s.apply(m, now)
			default:
				break drain
			}
		}
		s.flushNotices()
		end, err := s.tick(now)
		if end {
			s.finish()
			return s.snapshot(), err
		}
		var wait time.Duration
		idle := false
		if s.hasWork() {
			batch := s.batchFor(s.pace.rate)
			if k := s.pace.allow(now, s.pktBytes, batch); k > 0 {
				if err := s.sendData(k); err != nil {
					return s.snapshot(), err
				}
				continue
			}
			s.backlog = true
			wait = s.pace.wait(s.pktBytes, batch)
		} else {
			idle = s.state == senderRunning && s.lingerAt == 0
			wait = s.lastBeacon + beaconInterval - now
			if s.lingerAt > 0 {
				wait = min(wait, 20*time.Millisecond)
			}
		}
		wait = min(max(wait, 20*time.Microsecond), beaconInterval)
		timer.Reset(wait)
		select {
		case m := <-s.ctrl:
			s.apply(m, s.now())
		case <-timer.C:
		case <-ctx.Done():
		}
		if idle {
			s.stats.Idle += s.now() - now
		}
	}
}

// tick runs the timers: beacons, rate epochs, start policy, receiver
// timeouts and the end of the session.
func (s *sender) tick(now time.Duration) (end bool, err error) {
	if now-s.lastEpoch >= rateEpoch {
		s.epoch(now)
		s.lastEpoch = now
	}
	// The receiver table is scanned every few milliseconds, not for
	// every batch sent.
	if now-s.lastScan >= scanInterval || s.dirty {
		s.lastScan, s.dirty = now, false
		s.active = 0
		for id, r := range s.rcvs {
			if !r.left && now-r.lastHeard > s.cfg.ReceiverTimeout {
				s.log.Info("receiver timed out", "receiver", fmt.Sprintf("%#x", id), "held", r.held, "total", r.total)
				r.left = true
				if !r.done && !r.cut {
					s.stats.Forgotten++
				}
			}
			if r.left {
				delete(s.rcvs, id)
				continue
			}
			if !r.done && !r.cut {
				s.active++
			}
		}
	}
	active := s.active
	if active > 0 {
		s.idleSince = now
	}
	switch s.state {
	case senderWaiting:
		known := len(s.rcvs)
		need := max(s.cfg.MinReceivers, 1)
		if (known >= need && now >= s.cfg.MinWait) || (s.cfg.MaxWait > 0 && now >= s.cfg.MaxWait && known > 0) {
			s.state = senderRunning
			s.log.Info("starting", "receivers", known, "waited", now)
			s.sendBeacon(now)
		}
	case senderRunning:
		if s.stats.Completed > 0 && active == 0 {
			if s.lingerAt == 0 {
				s.lingerAt = now
			} else if now-s.lingerAt >= lingerTime {
				s.log.Info("every receiver is done", "completed", s.stats.Completed, "cut off", s.stats.CutOff)
				return true, nil
			}
		} else {
			s.lingerAt = 0
		}
	}
	if s.cfg.IdleTimeout > 0 && active == 0 && now-s.idleSince >= s.cfg.IdleTimeout {
		if s.stats.Completed == 0 {
			return true, fmt.Errorf("%w: no receiver for %v", ErrIdle, s.cfg.IdleTimeout)
		}
		s.log.Info("idle, ending", "completed", s.stats.Completed)
		return true, nil
	}
	if now-s.lastBeacon >= beaconInterval {
		s.sendBeacon(now)
	}
	if s.cfg.Progress != nil && now-s.lastProg >= progressInterval {
		s.lastProg = now
		s.cfg.Progress(s.snapshot())
	}
	return false, nil
}

// epoch feeds the adaptive rate with the loss signal: the lower median
// of the clean loss samples of eligible receivers.
func (s *sender) epoch(now time.Duration) {
	var losses []float64
	fresh := 2*statusInterval(len(s.rcvs)) + rateEpoch
	for _, r := range s.rcvs {
		if r.done || r.cut || !r.haveLoss || now-r.lossAt > fresh || r.lossFrom < s.ctl.changedAt {
			continue
		}
		losses = append(losses, r.loss)
	}
	var signal float64
	if len(losses) > 0 {
		slices.Sort(losses)
		signal = losses[(len(losses)-1)/2]
	}
	if s.ctl.adjust(now, signal, len(losses) > 0, s.backlog) {
		s.pace.setRate(s.ctl.rate, s.pktBytes*float64(s.batchFor(s.ctl.rate)))
		s.log.Debug("rate", "rate", int64(s.ctl.rate), "loss", signal, "floor", s.ctl.floor, "samples", len(losses))
	}
	s.backlog = false
}

func (s *sender) touch(id uint32, now time.Duration) *srcv {
	r := s.rcvs[id]
	if r == nil {
		r = &srcv{id: id, firstHeard: now}
		s.rcvs[id] = r
		s.dirty = true
		s.stats.Receivers++
		// A beacon now spares the newcomer the wait for the next one.
		s.lastBeacon = min(s.lastBeacon, now-beaconInterval)
		s.log.Info("receiver joined", "receiver", fmt.Sprintf("%#x", id), "known", len(s.rcvs))
	}
	r.lastHeard = now
	return r
}

func (s *sender) apply(m ctrlMsg, now time.Duration) {
	switch m.typ {
	case typeStatus:
		s.onStatus(m.from, m.st, now)
	case typeRequest:
		s.onRequest(m.from, m.req, now)
	}
}

func (s *sender) onStatus(from uint32, st status, now time.Duration) {
	if st.tag != 0 && st.tag != s.tag {
		s.stats.IgnoredRequests++
		return
	}
	if st.state == rcvLeaving {
		if r := s.rcvs[from]; r != nil && !r.left {
			r.left = true
			s.dirty = true
			if !r.done && !r.cut {
				s.stats.Forgotten++
			}
			s.log.Info("receiver left", "receiver", fmt.Sprintf("%#x", from), "held", st.held, "total", st.total)
		}
		return
	}
	r := s.touch(from, now)
	r.held, r.total = st.held, st.total
	if st.state == rcvDone {
		if !r.done {
			r.done = true
			s.dirty = true
			if !r.cut {
				s.stats.Completed++
			}
			s.log.Info("receiver done", "receiver", fmt.Sprintf("%#x", from), "chunks", st.total)
		}
		s.notices = append(s.notices, noticeEnt{id: from, code: noticeDoneAck})
		return
	}
	if r.cut {
		s.noticeCut(r, now)
	}
	if st.instance != s.id {
		return
	}
	if !r.baseOK || st.expected < r.baseExp || st.received < r.baseRecv {
		r.baseOK, r.baseRecv, r.baseExp, r.baseAt = true, st.received, st.expected, now
		return
	}
	dExp := st.expected - r.baseExp
	if dExp < minLossSample {
		return
	}
	dRecv := min(st.received-r.baseRecv, dExp)
	r.loss = 1 - float64(dRecv)/float64(dExp)
	r.lossFrom, r.lossAt, r.haveLoss = r.baseAt, now, true
	r.baseRecv, r.baseExp, r.baseAt = st.received, st.expected, now
}

func (s *sender) noticeCut(r *srcv, now time.Duration) {
	if now-r.lastCutNote >= cutNoticeEvery || r.lastCutNote == 0 {
		r.lastCutNote = now
		s.notices = append(s.notices, noticeEnt{id: r.id, code: noticeCutOff})
	}
}

// objID maps a request entry to an object index, or -1.
func (s *sender) objID(kind uint8, obj uint32) int {
	switch kind {
	case kindMeta:
		if int64(obj) < int64(s.nMeta) {
			return int(obj)
		}
	case kindChunk:
		if int64(obj) < int64(len(s.objs)-s.nMeta) {
			return s.nMeta + int(obj)
		}
	}
	return -1
}

func (s *sender) onRequest(from uint32, req request, now time.Duration) {
	if req.tag != s.tag {
		s.stats.IgnoredRequests++
		return
	}
	r := s.touch(from, now)
	if r.cut {
		s.stats.IgnoredRequests++
		s.noticeCut(r, now)
		return
	}
	s.stats.Requests++
	for _, e := range req.entries {
		id := s.objID(e.kind, e.obj)
		if id < 0 {
			s.cnt.malformed.Add(1)
			continue
		}
		o := &s.objs[id]
		// A full pass that began after the newest packet the requester
		// had seen answers the request: it crossed the pass in flight
		// (another receiver asked first). Serving it again would only
		// duplicate data.
		if o.full && req.instance == s.id && int32(o.fullSeq-req.seen) > 0 {
			s.stats.CrossedRequests++
			continue
		}
		bad := false
		for _, br := range e.ranges {
			if int(br.first)+int(br.count) > o.nblocks {
				bad = true
			}
		}
		if bad {
			s.cnt.malformed.Add(1)
			continue
		}
		if o.pending == nil {
			o.pending = s.getBitmap(o.nblocks)
		}
		asked, added := 0, 0
		if len(e.ranges) == 0 {
			asked, added = o.nblocks, o.pending.setRange(0, o.nblocks)
		}
		for _, br := range e.ranges {
			asked += int(br.count)
			added += o.pending.setRange(int(br.first), int(br.count))
		}
		s.stats.RequestedBlocks += uint64(asked)
		s.stats.MergedBlocks += uint64(asked - added)
		o.npend += added
		s.pendBlocks += int64(added)
		// The receiver listened during a full pass over o: asking again
		// means it lost blocks (a late joiner asks for free).
		if o.full && o.fullStart > r.firstHeard {
			r.charge += int64(added)
		}
		if added > 0 && !o.queued {
			o.queued = true
			switch {
			case id < s.nMeta:
				s.metaQ.push(id)
			case e.flags&flagRepair != 0:
				s.repairQ.push(id)
			default:
				s.freshQ.push(id)
			}
		}
		if o.npend == 0 && !o.queued {
			s.putBitmap(o)
		}
	}
	s.checkStraggler(r, now)
}

// checkStraggler cuts r off when its charge is over budget and far above
// the other receivers' (docs/PROTOCOL.md, "Stragglers").
func (s *sender) checkStraggler(r *srcv, now time.Duration) {
	if s.cfg.StragglerBudget < 0 || float64(r.charge) <= s.cfg.StragglerBudget*float64(s.imgBlocks) {
		return
	}
	if now-r.lastStragglerCheck < 100*time.Millisecond && r.lastStragglerCheck != 0 {
		return
	}
	r.lastStragglerCheck = now
	var others []int64
	for _, o := range s.rcvs {
		if o != r && !o.left {
			others = append(others, o.charge)
		}
	}
	if len(others) == 0 {
		return
	}
	slices.Sort(others)
	median := others[(len(others)-1)/2]
	if r.charge <= stragglerFactor*median {
		return
	}
	r.cut = true
	s.dirty = true
	s.stats.CutOff++
	s.log.Warn("receiver cut off as a straggler", "receiver", fmt.Sprintf("%#x", r.id),
		"resent blocks", r.charge, "image blocks", s.imgBlocks, "median of others", median)
	s.noticeCut(r, now)
}

func (s *sender) getBitmap(n int) bitmap {
	w := (n + 63) / 64
	if l := s.bitmaps[w]; len(l) > 0 {
		b := l[len(l)-1]
		s.bitmaps[w] = l[:len(l)-1]
		clear(b)
		return b
	}
	return newBitmap(n)
}

func (s *sender) putBitmap(o *sobj) {
	if o.pending != nil {
		w := len(o.pending)
		if len(s.bitmaps[w]) < 64 {
			s.bitmaps[w] = append(s.bitmaps[w], o.pending)
		}
		o.pending = nil
	}
}

func (s *sender) hasWork() bool {
	if s.cur >= 0 || s.metaQ.len() > 0 {
		return true
	}
	return s.state == senderRunning && (s.repairQ.len() > 0 || s.freshQ.len() > 0)
}

// nextBlock picks the next block to send: the current pass continues in
// block order; a new pass takes metadata first, then repairs, then fresh
// objects.
func (s *sender) nextBlock() (obj, blk int, last bool, err error) {
	for {
		if s.cur < 0 {
			switch {
			case s.metaQ.len() > 0:
				s.cur = s.metaQ.pop()
			case s.state != senderRunning:
				return -1, 0, false, nil
			case s.repairQ.len() > 0:
				s.cur = s.repairQ.pop()
			case s.freshQ.len() > 0:
				s.cur = s.freshQ.pop()
			default:
				return -1, 0, false, nil
			}
			s.curNext = 0
			s.objs[s.cur].passSent = 0
			s.objs[s.cur].passStart = s.now()
			s.objs[s.cur].passSeq = s.seq + 1
			s.stats.Passes++
			s.log.Trace("pass", "obj", s.cur, "pending", s.objs[s.cur].npend, "full", s.objs[s.cur].full, "t", s.now())
			if s.curData, err = s.load(s.cur); err != nil {
				return -1, 0, false, err
			}
		}
		o := &s.objs[s.cur]
		b := -1
		if o.pending != nil {
			b = o.pending.next(s.curNext, o.nblocks)
		}
		if b < 0 {
			s.endPass()
			continue
		}
		o.pending.unset(b)
		o.npend--
		s.pendBlocks--
		o.passSent++
		s.curNext = b + 1
		return s.cur, b, o.pending.next(b+1, o.nblocks) < 0, nil
	}
}

func (s *sender) endPass() {
	o := &s.objs[s.cur]
	if o.passSent == o.nblocks {
		o.full = true
		o.fullStart = o.passStart
		o.fullSeq = o.passSeq
	}
	if o.npend > 0 {
		// Blocks asked for behind the cursor during the pass.
		s.repairQ.push(s.cur)
	} else {
		o.queued = false
		s.putBitmap(o)
	}
	s.cur = -1
	s.curData = nil
}

// load returns the bytes of object id.
func (s *sender) load(id int) ([]byte, error) {
	if id < s.nMeta {
		off := id * metaSegment
		return s.meta[off : off+s.objs[id].size], nil
	}
	for _, c := range s.cache {
		if c.buf != nil && c.obj == id {
			return c.buf, nil
		}
	}
	c := &s.cache[s.cacheNext]
	s.cacheNext = (s.cacheNext + 1) % chunkCache
	size := s.objs[id].size
	if cap(c.buf) < s.maxChunk {
		c.buf = make([]byte, s.maxChunk)
	}
	c.buf, c.obj = c.buf[:size], -1
	if err := s.src.ReadChunk(id-s.nMeta, c.buf); err != nil {
		c.buf = c.buf[:0]
		return nil, fmt.Errorf("%w: read chunk %d: %w", ErrSource, id-s.nMeta, err)
	}
	c.obj = id
	return c.buf, nil
}

// sendData sends up to k DATA packets in one batch.
func (s *sender) sendData(k int) error {
	s.out = s.out[:0]
	var bytes float64
	for i := range k {
		id, b, last, err := s.nextBlock()
		if err != nil {
			return err
		}
		if id < 0 {
			break
		}
		o := &s.objs[id]
		d := dataHdr{kind: kindChunk, block: uint16(b), obj: uint32(id - s.nMeta), size: uint32(o.size), tag: s.tag}
		if id < s.nMeta {
			d.kind, d.obj = kindMeta, uint32(id)
		}
		if last {
			d.flags |= flagLast
		}
		if o.full {
			d.flags |= flagResend
			s.stats.ResentBlocks++
		}
		p := s.pkts[i]
		d.encode(p[headerLen:])
		off := b * s.blockSize
		n := copy(p[headerLen+dataHdrLen:], s.curData[off:min(off+s.blockSize, o.size)])
		if last {
			s.endPass()
		}
		s.seq++
		pkt := s.auth.seal(p, typeData, s.id, s.seq, dataHdrLen+n)
		s.out = append(s.out, pkt)
		bytes += float64(len(pkt) + ipUDPLen)
	}
	if len(s.out) == 0 {
		return nil
	}
	s.pace.spend(bytes)
	s.stats.DataBlocks += uint64(len(s.out))
	s.stats.Packets += uint64(len(s.out))
	s.stats.Bytes += uint64(bytes)
	return s.conn.writeBatch(s.out)
}

func (s *sender) sendBeacon(now time.Duration) {
	active := 0
	for _, r := range s.rcvs {
		if !r.done && !r.cut {
			active++
		}
	}
	b := beacon{
		state: s.state, blockSize: uint16(s.blockSize), chunks: uint32(len(s.objs) - s.nMeta),
		metaSize: uint64(len(s.meta)), metaHash: s.metaHash, rate: uint64(s.ctl.rate),
		queued: uint64(s.pendBlocks) * uint64(s.blockSize), receivers: uint32(len(s.rcvs)),
		statusMs: uint16(statusInterval(active) / time.Millisecond), segSize: metaSegment,
	}
	n := b.encode(s.ctlBuf[headerLen:])
	s.sendCtl(typeBeacon, n)
	s.lastBeacon = now
}

func (s *sender) sendCtl(typ ptype, n int) {
	s.seq++
	pkt := s.auth.seal(s.ctlBuf, typ, s.id, s.seq, n)
	if err := s.conn.write(pkt); err != nil {
		s.log.Warn("send", "type", typ, "error", err)
		return
	}
	s.stats.Packets++
	s.stats.Bytes += uint64(len(pkt) + ipUDPLen)
}

func (s *sender) flushNotices() {
	for len(s.notices) > 0 {
		k := min(len(s.notices), maxNotice)
		n := encodeNotice(s.ctlBuf[headerLen:], s.notices[:k])
		s.sendCtl(typeNotice, n)
		s.notices = s.notices[k:]
	}
	s.notices = s.notices[:0]
}

// finish tells receivers the session is over, and cut-off receivers
// once more that they were cut off: their fate should not hang on one
// lost NOTICE.
func (s *sender) finish() {
	s.state = senderEnding
	for range endingBeacons {
		for _, r := range s.rcvs {
			if r.cut && !r.done {
				s.notices = append(s.notices, noticeEnt{id: r.id, code: noticeCutOff})
			}
		}
		s.flushNotices()
		s.sendBeacon(s.now())
	}
}

func (s *sender) snapshot() SenderStats {
	st := s.stats
	st.Duration = s.now()
	st.Rate = int64(s.ctl.rate)
	st.Backoffs = s.ctl.backoffs
	st.Undos = s.ctl.undos
	st.Malformed = s.cnt.malformed.Load()
	st.Strays = s.cnt.strays.Load()
	st.Forged = s.cnt.forged.Load()
	st.ControlDropped = s.cnt.dropped.Load()
	return st
}
