package multicast

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ChunkSink receives the image on a receiver, as the core describes it.
type ChunkSink interface {
	// Meta parses and validates the metadata blob and returns the chunk
	// count and which chunks the target already holds (resume); have may
	// be nil. It is called once, before any Chunk.
	Meta(blob []byte) (numChunks int, have func(i int) bool, err error)
	// Chunk verifies payload as chunk i and writes it. An error wrapping
	// ErrChecksum makes the chunk needed again; any other error ends
	// Receive. Chunk is called from up to Workers (+ RepairWorkers once
	// cut off) goroutines at once; payload is only valid during the call.
	Chunk(i int, payload []byte) error
}

// ReceiverConfig configures Receive. Zero values of the optional fields
// take the defaults of docs/PROTOCOL.md.
type ReceiverConfig struct {
	// Group is the multicast group and data port P; the control port is
	// P+1.
	Group *net.UDPAddr
	// Interface names the interface to join on; LocalAddr selects it by
	// one of its addresses. Both empty: the kernel's choice.
	Interface string
	LocalAddr net.IP
	// TTL of this receiver's requests; 0 means 1. HostOnly sets TTL 0.
	TTL      int
	HostOnly bool

	SessionID uint64
	Key       []byte

	// ReadAhead is the number of objects kept in flight (default 16).
	ReadAhead int
	// Workers is the number of concurrent ChunkSink.Chunk calls
	// (default 2).
	Workers int
	// Repair, if set, fetches chunk i by other means (the unicast HTTP
	// transport) once the sender cut this receiver off as a straggler.
	Repair        func(ctx context.Context, i int) ([]byte, error)
	RepairWorkers int // concurrent Repair calls (default 2)
	// SenderTimeout fails when nothing was heard from the sender for this
	// long (default 30 s; negative: wait forever).
	SenderTimeout time.Duration
	// StragglerLimit fails a receiver cut off without Repair that is
	// still incomplete after this long (default 60 s).
	StragglerLimit time.Duration
	// ReadBuffer is the socket receive buffer in bytes (default 16 MiB).
	ReadBuffer int

	Logger hclog.Logger
	// Progress, if set, is called about twice a second from the
	// receiving goroutine; it must return quickly.
	Progress func(ReceiverStats)

	// dropForTest, if set, is called with every datagram read (from two
	// goroutines) and drops it when it returns true: simulated loss.
	dropForTest func(pkt []byte) bool
}

// ReceiverStats counts what a receiver did (docs/PROTOCOL.md, "What is
// counted").
type ReceiverStats struct {
	Duration time.Duration
	Packets  uint64 // datagrams read on the data port
	Bytes    uint64

	DataBlocks uint64 // new blocks of needed objects
	Duplicates uint64 // blocks already held
	Discarded  uint64 // blocks dropped for lack of buffers
	Lost       uint64 // sender packets missing from the sequence (estimate)

	Requests  uint64 // REQUEST packets sent
	Overheard uint64 // entries of others' requests for objects this receiver needed

	Chunks           int // in the image
	Resumed          int // held before the session
	Received         int // by multicast
	Repaired         int // by the repair hook
	ChecksumFailures int
	SenderRestarts   int
	CutOff           bool
	DoneAcked        bool

	Malformed, Strays, Forged uint64
}

// DuplicateRatio is the share of received data blocks that were already
// held.
func (s ReceiverStats) DuplicateRatio() float64 {
	if t := s.DataBlocks + s.Duplicates; t > 0 {
		return float64(s.Duplicates) / float64(t)
	}
	return 0
}

const (
	never         = time.Duration(-1 << 62)
	doneRepeat    = 100 * time.Millisecond
	doneTries     = 20
	maxWait       = 50 * time.Millisecond
	recvBatch     = 64
	heardQueue    = 1024
	maxRepairFail = 3
	askIdle       = time.Second
	stallTime     = 150 * time.Millisecond
	askCrossing   = 50 * time.Millisecond // a beacon this much younger than an ask was sent after the sender got it
	askSlack      = 1 << 20
)

// Object states on a receiver.
const (
	objUnknown = iota // chunks before the metadata is known
	objNeed
	objWriting
	objHave
)

// Receiver phases.
const (
	phListening = iota
	phMeta
	phReceiving
	phDone
)

type robj struct {
	state  uint8
	inList bool // in the asked list
	slot   int32
	ask    ask // last whole-object ask, by anyone
}

// ask records the last ask for an object or blocks of it, by anyone. It
// is answered in the sender's FIFO order, so it goes stale by data volume
// (more DATA went by than was queued ahead of it, twice over), not by a
// clock that a busy host would stretch; or when a beacon sent well after
// it announces an empty queue (the request was lost), or, should beacons
// be lost too, after askIdle without any DATA.
type ask struct {
	at     time.Duration // never: not asked
	limit  uint64        // DATA bytes seen by which the answer must have come
	bumped bool          // limit extended by the first beacon after the ask
}

var noAsk = ask{at: never}

type rslot struct {
	obj      int // -1: free
	size     int
	nblocks  int
	got      bitmap
	ngot     int
	asked    bitmap // blocks asked for (by anyone) since the pass ended
	ask      ask
	lastData time.Duration
	repairAt time.Duration
	buf      []byte
	writing  bool
}

type writeJob struct {
	obj, chunk, slot int
	buf              []byte
	repaired         bool
}

type writeResult struct {
	writeJob
	err error
}

type repairResult struct {
	chunk int
	err   error
}

type receiver struct {
	cfg       ReceiverConfig
	log       hclog.Logger
	sink      ChunkSink
	id        uint32
	seq       uint32
	auth      *auth
	data, ctl *mconn
	t0        time.Time
	ctx       context.Context
	fatal     error
	finished  bool

	// the sender followed
	haveBeacon  bool
	instance    uint32
	bcn         beacon
	tag         uint32
	blockSize   int
	senderHeard time.Duration
	seqInit     bool
	seqFirst    uint64
	seqMax      uint64
	seqLast     uint32
	rx, rxDrop  uint64

	phase     int
	nMeta     int
	objs      []robj
	metaBuf   []byte
	metaHave  int
	held      int
	heldBits  []uint64 // chunks held or being written, read by repair workers
	slots     []rslot
	free      []int
	cursor    int
	asked     []int
	curObj    int
	askDue    time.Duration
	statusDue time.Duration
	progDue   time.Duration

	cut         bool
	cutAt       time.Duration
	doneSent    int
	doneNext    time.Duration
	repairFail  int
	writing     int // chunks with the writers
	lostBefore  uint64
	dataSeen    uint64        // bytes of DATA seen, whatever the object
	lastAnyData time.Duration // when DATA last arrived
	emptyAt     time.Duration // when a beacon last announced an empty queue
	objAvg      uint64        // average object size seen
	maxObj      int           // largest object size seen

	heard   chan request
	jobs    chan writeJob
	results chan writeResult
	repIn   chan int
	repOut  chan repairResult
	wg      sync.WaitGroup
	stop    context.CancelFunc
	cnt     counters

	out    []byte
	stBuf  [headerLen + statusLen + tagLen]byte
	rw     reqWriter
	ranges []blockRange
	stats  ReceiverStats
}

// Receive joins cfg.Group and fetches the image into sink until every
// chunk is held, an error, or ctx is cancelled.
func Receive(ctx context.Context, cfg ReceiverConfig, sink ChunkSink) (ReceiverStats, error) {
	if err := checkCommon(cfg.Group, cfg.Key); err != nil {
		return ReceiverStats{}, err
	}
	if cfg.ReadAhead <= 0 {
		cfg.ReadAhead = 16
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.RepairWorkers <= 0 {
		cfg.RepairWorkers = 2
	}
	if cfg.SenderTimeout == 0 {
		cfg.SenderTimeout = 30 * time.Second
	}
	if cfg.StragglerLimit <= 0 {
		cfg.StragglerLimit = 60 * time.Second
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 16 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	nslots := 2*cfg.ReadAhead + 8
	r := &receiver{
		cfg: cfg, log: log.Named("multicast-receiver"), sink: sink, id: nonzeroID(),
		auth: newAuth(cfg.SessionID, cfg.Key), ctx: ctx, stop: stop, curObj: -1,
		askDue: never, heard: make(chan request, heardQueue),
		jobs:    make(chan writeJob, nslots+cfg.RepairWorkers+1),
		results: make(chan writeResult, nslots+cfg.RepairWorkers+1),
		repOut:  make(chan repairResult, cfg.RepairWorkers),
		out:     make([]byte, maxControl),
		objAvg:  1 << 20,
		slots:   make([]rslot, nslots),
	}
	for i := range r.slots {
		r.slots[i].obj = -1
		r.free = append(r.free, nslots-1-i)
	}
	ifi, err := resolveInterface(cfg.Interface, cfg.LocalAddr)
	if err != nil {
		return ReceiverStats{}, err
	}
	ttl := ttlOf(cfg.TTL, cfg.HostOnly)
	ctlDst := &net.UDPAddr{IP: cfg.Group.IP, Port: cfg.Group.Port + 1}
	r.data, err = openConn(ctx, sockOpts{group: cfg.Group.IP, port: cfg.Group.Port, dst: ctlDst, ifi: ifi, ttl: ttl,
		rcvbuf: cfg.ReadBuffer, batch: recvBatch, bufSize: maxDatagram + 1})
	if err != nil {
		return ReceiverStats{}, err
	}
	defer r.data.close()
	r.ctl, err = openConn(ctx, sockOpts{group: cfg.Group.IP, port: cfg.Group.Port + 1, dst: ctlDst, ifi: ifi, ttl: ttl,
		rcvbuf: 1 << 20, batch: 16, bufSize: maxControl + 1})
	if err != nil {
		return ReceiverStats{}, err
	}
	defer r.ctl.close()
	r.log.Debug("joined", "group", cfg.Group, "receiver", fmt.Sprintf("%#x", r.id), "rcvbuf", r.data.rcvbuf)

	var ctlWG sync.WaitGroup
	ctlWG.Go(r.readCtl)
	for range cfg.Workers {
		r.wg.Go(r.writer)
	}
	stats, err := r.run()
	if r.phase != phDone {
		r.sendStatus(rcvLeaving)
	}
	stop()
	r.ctl.close()
	ctlWG.Wait()
	close(r.jobs)
	r.wg.Wait()
	return stats, err
}

func (r *receiver) now() time.Duration { return time.Since(r.t0) }

// readCtl overhears the other receivers' requests on the control port.
func (r *receiver) readCtl() {
	a := newAuth(r.cfg.SessionID, r.cfg.Key)
	for {
		n, err := r.ctl.readBatch(time.Now().Add(time.Second))
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Error("control socket", "error", err)
			}
			return
		}
		for i := range n {
			pkt := r.ctl.msg(i)
			if r.cfg.dropForTest != nil && pkt != nil && r.cfg.dropForTest(pkt) {
				continue
			}
			if pkt == nil {
				r.cnt.malformed.Add(1)
				continue
			}
			h, p, err := a.open(pkt)
			if err != nil {
				r.cnt.count(err)
				continue
			}
			if h.node == r.id || h.typ != typeRequest {
				continue
			}
			req, err := decodeRequest(p)
			if err != nil {
				r.cnt.malformed.Add(1)
				continue
			}
			select {
			case r.heard <- req:
			default:
				r.cnt.dropped.Add(1)
			}
		}
	}
}

// writer hands complete chunks to the sink.
func (r *receiver) writer() {
	for j := range r.jobs {
		var err error
		if r.ctx.Err() != nil {
			err = r.ctx.Err()
		} else {
			err = r.sink.Chunk(j.chunk, j.buf)
		}
		r.results <- writeResult{j, err}
	}
}

// repairer fetches chunks through the repair hook and writes them. A
// chunk is claimed first, so multicast and repair never write the same
// chunk.
func (r *receiver) repairer() {
	for {
		var i int
		select {
		case <-r.ctx.Done():
			return
		case i = <-r.repIn:
		}
		if !r.claim(i) {
			continue
		}
		p, err := r.cfg.Repair(r.ctx, i)
		if err != nil {
			r.release(i)
			r.repOut <- repairResult{i, err}
			return
		}
		err = r.sink.Chunk(i, p)
		if err != nil {
			r.release(i)
		}
		r.results <- writeResult{writeJob{obj: r.nMeta + i, chunk: i, slot: -1, repaired: true}, err}
	}
}

// claim marks a chunk as being written; false when it already is.
func (r *receiver) claim(chunk int) bool {
	w, bit := &r.heldBits[chunk>>6], uint64(1)<<(uint(chunk)&63)
	for {
		old := atomic.LoadUint64(w)
		if old&bit != 0 {
			return false
		}
		if atomic.CompareAndSwapUint64(w, old, old|bit) {
			return true
		}
	}
}

func (r *receiver) release(chunk int) {
	atomic.AndUint64(&r.heldBits[chunk>>6], ^(uint64(1) << (uint(chunk) & 63)))
}

func (r *receiver) run() (ReceiverStats, error) {
	r.t0 = time.Now()
	r.sendStatus(rcvListening)
	r.statusDue = 100 * time.Millisecond
	for {
		if r.fatal != nil {
			return r.snapshot(), r.fatal
		}
		if r.finished {
			return r.snapshot(), nil
		}
		if err := r.ctx.Err(); err != nil {
			return r.snapshot(), err
		}
		now := r.now()
		n, err := r.data.readBatch(r.t0.Add(r.nextWake(now)))
		if err != nil {
			return r.snapshot(), fmt.Errorf("multicast: receive: %w", err)
		}
		now = r.now()
		for i := range n {
			r.onPacket(r.data.msg(i), now)
		}
		r.drain(now)
		r.timers(now)
	}
}

// nextWake is when the loop must run even without packets.
func (r *receiver) nextWake(now time.Duration) time.Duration {
	w := min(now+maxWait, r.statusDue)
	if r.phase == phDone {
		w = min(w, r.doneNext)
	}
	if r.canAsk() {
		if r.askDue != never {
			w = min(w, r.askDue)
		}
		for i := range r.slots {
			if s := &r.slots[i]; s.obj >= 0 && s.repairAt != never && !s.writing && r.objs[s.obj].state == objNeed {
				w = min(w, s.repairAt)
			}
		}
	}
	// Results of writers and repairs arrive on channels, which the
	// loop sees only when it wakes.
	if r.writing > 0 || r.repIn != nil {
		w = min(w, now+2*time.Millisecond)
	}
	return max(w, now+50*time.Microsecond)
}

func (r *receiver) drain(now time.Duration) {
	for {
		select {
		case req := <-r.heard:
			r.onHeard(req, now)
		case res := <-r.results:
			r.onWritten(res, now)
		case res := <-r.repOut:
			r.onRepaired(res)
		default:
			return
		}
	}
}

func (r *receiver) onPacket(pkt []byte, now time.Duration) {
	if r.cfg.dropForTest != nil && pkt != nil && r.cfg.dropForTest(pkt) {
		return
	}
	r.stats.Packets++
	if pkt == nil {
		r.cnt.malformed.Add(1)
		return
	}
	r.stats.Bytes += uint64(len(pkt))
	h, p, err := r.auth.open(pkt)
	if err != nil {
		r.cnt.count(err)
		return
	}
	switch h.typ {
	case typeBeacon:
		b, err := decodeBeacon(p)
		if err != nil {
			r.cnt.malformed.Add(1)
			return
		}
		r.onBeacon(h, b, now)
		r.countSeq(h, now)
	case typeData:
		r.countSeq(h, now)
		r.dataSeen += uint64(len(p))
		r.lastAnyData = now
		r.onData(h, p, now)
	case typeNotice:
		r.countSeq(h, now)
		if err := decodeNotice(p, func(e noticeEnt) { r.onNotice(e, now) }); err != nil {
			r.cnt.malformed.Add(1)
		}
	default:
		r.cnt.malformed.Add(1)
	}
}

// countSeq keeps the loss counters of the sender instance followed.
func (r *receiver) countSeq(h header, now time.Duration) {
	r.senderHeard = now
	if !r.haveBeacon || h.node != r.instance {
		return
	}
	if !r.seqInit {
		r.seqInit = true
		r.seqFirst, r.seqMax, r.seqLast = uint64(h.seq), uint64(h.seq), h.seq
		r.rx = 1
		return
	}
	if d := int32(h.seq - r.seqLast); d > 0 {
		r.seqMax += uint64(d)
		r.seqLast = h.seq
	}
	r.rx++
}

func (r *receiver) onBeacon(h header, b beacon, now time.Duration) {
	if !r.haveBeacon {
		r.adopt(h, b, now)
	} else if h.node != r.instance {
		if b.metaHash != r.bcn.metaHash {
			if r.phase <= phMeta {
				r.log.Info("sender restarted with another image before the metadata was complete", "sender", fmt.Sprintf("%#x", h.node))
				r.reset()
				r.adopt(h, b, now)
				return
			}
			r.fatal = fmt.Errorf("%w: metadata SHA-256 %x, was %x", ErrImageChanged, b.metaHash[:8], r.bcn.metaHash[:8])
			return
		}
		r.stats.SenderRestarts++
		r.log.Info("sender restarted", "sender", fmt.Sprintf("%#x", h.node), "held", r.held, "chunks", len(r.objs)-r.nMeta)
		r.instance = h.node
		r.lostBefore = r.snapshot().Lost
		r.seqInit, r.rx, r.rxDrop = false, 0, 0
		r.forgetAsks()
		if int(b.blockSize) != r.blockSize {
			r.dropPartial()
			r.blockSize = int(b.blockSize)
		}
	}
	r.bcn = b
	if b.queued == 0 {
		r.emptyAt = now
	}
	r.bumpAsks(now)
	if b.state == senderEnding && r.phase != phDone {
		n := len(r.objs) - r.nMeta
		switch {
		case r.cfg.Repair != nil && r.phase == phReceiving:
			if r.repIn == nil {
				r.log.Warn("the sender ended the session; fetching the rest through the repair source", "missing", n-r.held)
				r.startRepair()
			}
		case r.cut:
			r.fatal = fmt.Errorf("%w: the sender ended with %d of %d chunks missing; configure a repair source (unicast transport)", ErrStraggler, n-r.held, n)
		default:
			r.fatal = fmt.Errorf("%w: %d of %d chunks held", ErrSenderEnded, r.held, n)
		}
	}
}

// adopt starts following a sender and its image.
func (r *receiver) adopt(h header, b beacon, now time.Duration) {
	r.haveBeacon = true
	r.instance = h.node
	r.bcn = b
	r.tag = imageTag(b.metaHash)
	r.blockSize = int(b.blockSize)
	r.nMeta = int((b.metaSize + uint64(b.segSize) - 1) / uint64(b.segSize))
	n := r.nMeta + int(b.chunks)
	r.objs = make([]robj, n)
	for i := range r.objs {
		r.objs[i] = robj{slot: -1, ask: noAsk}
		if i < r.nMeta {
			r.objs[i].state = objNeed
		}
	}
	r.heldBits = make([]uint64, (int(b.chunks)+63)/64)
	r.metaBuf = make([]byte, b.metaSize)
	r.phase = phMeta
	r.cursor = 0
	r.stats.Chunks = int(b.chunks)
	r.log.Debug("sender found", "sender", fmt.Sprintf("%#x", h.node), "chunks", b.chunks, "metadata", b.metaSize)
	r.sendStatus(rcvListening)
}

// reset forgets an image whose metadata never completed.
func (r *receiver) reset() {
	for i := range r.slots {
		if r.slots[i].obj >= 0 && !r.slots[i].writing {
			r.freeSlot(i)
		}
	}
	r.haveBeacon, r.seqInit, r.rx, r.rxDrop = false, false, 0, 0
	r.objs, r.asked, r.metaHave, r.curObj = nil, r.asked[:0], 0, -1
	r.askDue = never
}

// forgetAsks drops what this receiver knows of asks: the sender that
// queued them is gone.
func (r *receiver) forgetAsks() {
	for _, id := range r.asked {
		r.objs[id].ask = noAsk
		r.objs[id].inList = false
	}
	r.asked = r.asked[:0]
	for i := range r.slots {
		if s := &r.slots[i]; s.obj >= 0 && !s.writing {
			clear(s.asked)
			s.ask = noAsk
			s.repairAt = never
		}
	}
	r.askDue = never
	r.curObj = -1
}

func (r *receiver) dropPartial() {
	for i := range r.slots {
		if s := &r.slots[i]; s.obj >= 0 && !s.writing {
			r.objs[s.obj].slot = -1
			r.freeSlot(i)
		}
	}
}

func (r *receiver) objID(kind uint8, obj uint32) int {
	switch kind {
	case kindMeta:
		if int64(obj) < int64(r.nMeta) {
			return int(obj)
		}
	case kindChunk:
		if int64(obj) < int64(len(r.objs)-r.nMeta) {
			return r.nMeta + int(obj)
		}
	}
	return -1
}

func (r *receiver) onData(h header, p []byte, now time.Duration) {
	if !r.haveBeacon {
		return
	}
	d, blk, err := decodeData(p, r.blockSize)
	if err != nil {
		r.cnt.malformed.Add(1)
		return
	}
	if d.tag != r.tag {
		return
	}
	id := r.objID(d.kind, d.obj)
	if id < 0 {
		r.cnt.malformed.Add(1)
		return
	}
	if id != r.curObj {
		if prev := r.curObj; prev >= 0 {
			r.passEnded(prev, now)
		}
		r.curObj = id
	}
	o := &r.objs[id]
	switch o.state {
	case objHave, objWriting:
		r.stats.Duplicates++
		return
	case objUnknown:
		// Chunks going by while the metadata is incomplete are kept
		// (while buffers last) and sorted out once it is known.
		if r.phase != phMeta || (o.slot < 0 && len(r.free) <= r.nMeta+2) {
			return
		}
	}
	if id < r.nMeta && int(d.size) != min(int(r.bcn.segSize), len(r.metaBuf)-id*int(r.bcn.segSize)) {
		r.cnt.malformed.Add(1)
		return
	}
	if o.slot < 0 {
		si := r.allocSlot(id, int(d.size))
		if si < 0 {
			r.stats.Discarded++
			if h.node == r.instance {
				r.rxDrop++
			}
			return
		}
		o.slot = int32(si)
	}
	s := &r.slots[o.slot]
	if int(d.size) != s.size {
		r.cnt.malformed.Add(1)
		return
	}
	b := int(d.block)
	if s.got.has(b) {
		r.stats.Duplicates++
	} else {
		copy(s.buf[b*r.blockSize:], blk)
		s.got.set(b)
		s.ngot++
		r.stats.DataBlocks++
	}
	s.lastData = now
	if s.ngot == s.nblocks {
		r.objAvg = (7*r.objAvg + uint64(s.size)) / 8
		r.complete(id)
	} else if d.flags&flagLast != 0 {
		r.passEnded(id, now)
	}
}

func (r *receiver) allocSlot(id, size int) int {
	if len(r.free) == 0 {
		return -1
	}
	si := r.free[len(r.free)-1]
	r.free = r.free[:len(r.free)-1]
	s := &r.slots[si]
	nb := (size + r.blockSize - 1) / r.blockSize
	// Chunks vary in size; growing buffers to the largest seen yet keeps
	// slots from reallocating over and over.
	r.maxObj = max(r.maxObj, size)
	if cap(s.buf) < size {
		s.buf = make([]byte, r.maxObj)
	}
	*s = rslot{obj: id, size: size, nblocks: nb, got: s.got.resize(nb), asked: s.asked.resize(nb),
		ask: noAsk, repairAt: never, buf: s.buf[:size]}
	return si
}

func (r *receiver) freeSlot(si int) {
	s := &r.slots[si]
	if s.obj >= 0 && s.obj < len(r.objs) && r.objs[s.obj].slot == int32(si) {
		r.objs[s.obj].slot = -1
	}
	s.obj, s.writing = -1, false
	r.free = append(r.free, si)
}

// passEnded schedules a request for the blocks of id still missing after
// the sender's pass over it.
func (r *receiver) passEnded(id int, now time.Duration) {
	o := &r.objs[id]
	if o.state != objNeed || o.slot < 0 {
		return
	}
	s := &r.slots[o.slot]
	if s.writing {
		return
	}
	clear(s.asked)
	s.ask = noAsk
	if s.repairAt == never {
		s.repairAt = now + r.backoff()
	}
}

func (r *receiver) complete(id int) {
	o := &r.objs[id]
	si := int(o.slot)
	s := &r.slots[si]
	if id < r.nMeta {
		copy(r.metaBuf[id*int(r.bcn.segSize):], s.buf[:s.size])
		o.state = objHave
		r.freeSlot(si)
		r.metaHave++
		if r.metaHave == r.nMeta {
			r.finishMeta()
		}
		return
	}
	if o.state == objUnknown {
		return // finishMeta dispatches it if needed
	}
	if !r.claim(id - r.nMeta) {
		// The repair path is writing it.
		r.freeSlot(si)
		return
	}
	o.state = objWriting
	s.writing = true
	r.writing++
	r.jobs <- writeJob{obj: id, chunk: id - r.nMeta, slot: si, buf: s.buf[:s.size]}
}

func (r *receiver) finishMeta() {
	if sha256.Sum256(r.metaBuf) != r.bcn.metaHash {
		// Authenticated packets make this a sender bug; fetch again.
		r.stats.ChecksumFailures++
		r.log.Warn("metadata checksum mismatch; fetching it again")
		for i := range r.nMeta {
			r.objs[i].state = objNeed
		}
		r.metaHave = 0
		return
	}
	n, have, err := r.sink.Meta(r.metaBuf)
	if err != nil {
		r.fatal = fmt.Errorf("%w: %w", ErrMetadata, err)
		return
	}
	if n != len(r.objs)-r.nMeta {
		r.fatal = fmt.Errorf("%w: metadata lists %d chunks, the sender announced %d", ErrMetadata, n, len(r.objs)-r.nMeta)
		return
	}
	for i := range n {
		o := &r.objs[r.nMeta+i]
		if have != nil && have(i) {
			o.state = objHave
			r.held++
			r.stats.Resumed++
			r.claim(i)
		} else {
			o.state = objNeed
		}
	}
	r.phase = phReceiving
	r.cursor = r.nMeta
	now := r.now()
	for i := range r.slots {
		s := &r.slots[i]
		switch {
		case s.obj < r.nMeta || s.writing:
		case r.objs[s.obj].state != objNeed:
			r.freeSlot(i)
		case s.ngot == s.nblocks:
			r.complete(s.obj)
		case s.obj != r.curObj:
			// Its pass is over; one still going on ends as usual.
			r.passEnded(s.obj, now)
		}
	}
	r.log.Info("metadata received", "chunks", n, "held", r.held)
	if r.held == n {
		r.becomeDone(r.now())
		return
	}
	r.sendStatus(rcvReceiving)
}

func (r *receiver) onWritten(res writeResult, now time.Duration) {
	if res.slot >= 0 {
		r.freeSlot(res.slot)
		r.writing--
	}
	o := &r.objs[res.obj]
	chunk := res.chunk
	switch {
	case res.err == nil:
		o.state = objHave
		r.held++
		if res.repaired {
			r.stats.Repaired++
		} else {
			r.stats.Received++
		}
		if r.held == len(r.objs)-r.nMeta {
			r.becomeDone(now)
		}
	case errors.Is(res.err, ErrChecksum):
		r.stats.ChecksumFailures++
		r.log.Warn("chunk failed verification; fetching it again", "chunk", chunk, "error", res.err)
		o.state = objNeed
		o.ask = noAsk
		if res.slot >= 0 {
			r.release(chunk)
		}
		r.cursor = min(r.cursor, res.obj)
		if res.repaired {
			if r.repairFail++; r.repairFail > maxRepairFail {
				r.fatal = fmt.Errorf("multicast: repair chunk %d: %w", chunk, res.err)
				return
			}
		}
		if r.repIn != nil {
			select {
			case r.repIn <- chunk:
			default:
			}
		}
	case r.ctx.Err() != nil:
	default:
		r.fatal = fmt.Errorf("multicast: write chunk %d: %w", chunk, res.err)
	}
}

func (r *receiver) onRepaired(res repairResult) {
	if r.ctx.Err() == nil {
		r.fatal = fmt.Errorf("multicast: repair chunk %d: %w", res.chunk, res.err)
	}
}

func (r *receiver) onNotice(e noticeEnt, now time.Duration) {
	if e.id != r.id {
		return
	}
	switch e.code {
	case noticeDoneAck:
		if r.phase == phDone {
			r.stats.DoneAcked = true
			r.finished = true
		}
	case noticeCutOff:
		if r.cut || r.phase == phDone {
			return
		}
		r.cut, r.cutAt, r.stats.CutOff = true, now, true
		missing := len(r.objs) - r.nMeta - r.held
		if r.cfg.Repair == nil {
			r.log.Warn("cut off by the sender as a straggler; no repair source, taking what passes by", "missing", missing, "limit", r.cfg.StragglerLimit)
			return
		}
		r.log.Warn("cut off by the sender as a straggler; fetching the rest through the repair source", "missing", missing)
		r.startRepair()
	}
}

// startRepair hands every chunk still needed to the repair workers.
func (r *receiver) startRepair() {
	if r.repIn != nil {
		return
	}
	r.repIn = make(chan int, len(r.objs)-r.nMeta+64)
	for i := r.nMeta; i < len(r.objs); i++ {
		if r.objs[i].state == objNeed {
			r.repIn <- i - r.nMeta
		}
	}
	for range r.cfg.RepairWorkers {
		r.wg.Go(r.repairer)
	}
}

// onHeard records another receiver's request: what it asked for is in
// flight for this receiver too.
func (r *receiver) onHeard(req request, now time.Duration) {
	if req.tag != r.tag || r.objs == nil {
		return
	}
	// Entries are answered in order: each waits for those before it.
	ahead := uint64(0)
	for _, e := range req.entries {
		if len(e.ranges) == 0 {
			ahead += r.objAvg
		}
		for _, br := range e.ranges {
			ahead += uint64(br.count) * uint64(r.blockSize)
		}
		id := r.objID(e.kind, e.obj)
		if id < 0 || r.objs[id].state != objNeed {
			continue
		}
		o := &r.objs[id]
		r.stats.Overheard++
		if o.slot < 0 {
			if len(e.ranges) == 0 {
				o.ask = r.newAsk(now, ahead)
				r.track(id)
			}
			continue
		}
		s := &r.slots[o.slot]
		if s.writing || int(s.nblocks) == 0 {
			continue
		}
		if len(e.ranges) == 0 {
			s.asked.setRange(0, s.nblocks)
		}
		missing := uint64(0)
		for _, br := range e.ranges {
			if int(br.first)+int(br.count) <= s.nblocks {
				s.asked.setRange(int(br.first), int(br.count))
				missing += uint64(br.count) * uint64(r.blockSize)
			}
		}
		if len(e.ranges) == 0 {
			missing = uint64(s.size)
		}
		s.ask = r.newAsk(now, ahead+missing)
	}
}

func (r *receiver) track(id int) {
	if !r.objs[id].inList {
		r.objs[id].inList = true
		r.asked = append(r.asked, id)
	}
}

// backoff is the random delay before a request (suppression).
func (r *receiver) backoff() time.Duration {
	d := min(max(time.Duration(r.bcn.receivers)*100*time.Microsecond, 2*time.Millisecond), 50*time.Millisecond)
	return time.Duration(rand.Int64N(int64(d)))
}

// newAsk records an ask made now with ahead bytes of it queued before
// its answer (besides the sender's queue).
func (r *receiver) newAsk(now time.Duration, ahead uint64) ask {
	return ask{at: now, limit: r.dataSeen + 2*(r.bcn.queued+ahead) + askSlack}
}

// bumpAsks extends asks made before this beacon by the queue it
// announces: the beacon may be the first to count them, and the queue
// ahead of them may have grown since the previous one.
func (r *receiver) bumpAsks(now time.Duration) {
	horizon := r.dataSeen + 2*r.bcn.queued + askSlack
	bump := func(a *ask) {
		if a.at != never && !a.bumped && a.at < now {
			a.limit = max(a.limit, horizon)
			a.bumped = true
		}
	}
	for _, id := range r.asked {
		bump(&r.objs[id].ask)
	}
	for i := range r.slots {
		if r.slots[i].obj >= 0 {
			bump(&r.slots[i].ask)
		}
	}
}

// fresh reports whether an ask may still be answered.
func (r *receiver) fresh(a ask, now time.Duration) bool {
	return a.at != never && r.dataSeen <= a.limit && r.emptyAt <= a.at+askCrossing &&
		now-max(a.at, r.lastAnyData) < askIdle
}

func (r *receiver) timers(now time.Duration) {
	if r.fatal != nil || r.finished {
		return
	}
	if r.cfg.SenderTimeout > 0 && r.phase != phDone && r.repIn == nil && now-r.senderHeard > r.cfg.SenderTimeout {
		if !r.haveBeacon {
			// Say what was heard: forged packets mean a wrong session key,
			// strays another session on this group and port.
			r.fatal = fmt.Errorf("%w: no beacon of session %#x on %v for %v (%d forged, %d stray packets seen); check the sender, group, port and session key",
				ErrSenderLost, r.cfg.SessionID, r.cfg.Group, r.cfg.SenderTimeout, r.cnt.forged.Load(), r.cnt.strays.Load())
			return
		}
		r.fatal = fmt.Errorf("%w: nothing heard from the sender for %v (%d of %d chunks held)", ErrSenderLost, r.cfg.SenderTimeout, r.held, r.stats.Chunks)
		return
	}
	if r.phase == phDone {
		if now >= r.doneNext {
			if r.doneSent >= doneTries {
				r.log.Info("done; the sender did not acknowledge", "tries", r.doneSent)
				r.finished = true
				return
			}
			r.sendStatus(rcvDone)
			r.doneSent++
			r.doneNext = now + doneRepeat
		}
		return
	}
	if now >= r.statusDue {
		st := uint8(rcvListening)
		switch {
		case r.cut:
			st = rcvCut
		case r.phase == phReceiving:
			st = rcvReceiving
		}
		r.sendStatus(st)
		iv := time.Duration(r.bcn.statusMs) * time.Millisecond
		if iv <= 0 {
			iv = 100 * time.Millisecond
		}
		r.statusDue = now + iv
	}
	if r.cut && r.cfg.Repair == nil && now-r.cutAt > r.cfg.StragglerLimit {
		r.fatal = fmt.Errorf("%w: %d of %d chunks still missing after %v; configure a repair source (unicast transport)",
			ErrStraggler, len(r.objs)-r.nMeta-r.held, len(r.objs)-r.nMeta, r.cfg.StragglerLimit)
		return
	}
	if r.cfg.Progress != nil && now >= r.progDue {
		r.progDue = now + progressInterval
		r.cfg.Progress(r.snapshot())
	}
	if !r.canAsk() {
		return
	}
	r.rw.reset(r.out[headerLen:maxControl-tagLen], r.tag)
	r.repairs(now)
	r.window(now)
	r.flushRequest()
}

// canAsk reports whether this receiver sends requests now: not when cut
// off, and for chunks only while the sender runs (it serves metadata
// while it waits).
func (r *receiver) canAsk() bool {
	return !r.cut && (r.phase == phMeta || (r.phase == phReceiving && r.bcn.state == senderRunning))
}

// repairs asks for the missing blocks of partly received objects whose
// pass ended, or that stalled.
func (r *receiver) repairs(now time.Duration) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.obj < 0 || s.writing || r.objs[s.obj].state != objNeed {
			continue
		}
		if s.repairAt == never {
			if !r.fresh(s.ask, now) && now-s.lastData > stallTime {
				clear(s.asked)
				s.ask = noAsk
				s.repairAt = now + r.backoff()
			}
			continue
		}
		if now < s.repairAt {
			continue
		}
		s.repairAt = never
		var asked bitmap
		if r.fresh(s.ask, now) {
			asked = s.asked
		}
		r.ranges = missingRanges(r.ranges[:0], s.got, asked, s.nblocks)
		if len(r.ranges) == 0 {
			continue
		}
		kind, obj := r.kindOf(s.obj)
		r.log.Trace("repair", "obj", s.obj, "got", s.ngot, "of", s.nblocks, "ranges", len(r.ranges))
		r.addEntry(kind, flagRepair, obj, r.ranges)
		missing := uint64(0)
		for _, br := range r.ranges {
			s.asked.setRange(int(br.first), int(br.count))
			missing += uint64(br.count) * uint64(r.blockSize)
		}
		s.ask = r.newAsk(now, missing)
		s.lastData = now
	}
}

func (r *receiver) kindOf(id int) (uint8, uint32) {
	if id < r.nMeta {
		return kindMeta, uint32(id)
	}
	return kindChunk, uint32(id - r.nMeta)
}

// window keeps ReadAhead objects in flight.
func (r *receiver) window(now time.Duration) {
	// Slots of chunks kept while the metadata is incomplete do not count.
	inflight := 0
	for i := range r.slots {
		if s := &r.slots[i]; s.obj >= 0 && r.objs[s.obj].state != objUnknown {
			inflight++
		}
	}
	keep := r.asked[:0]
	for _, id := range r.asked {
		o := &r.objs[id]
		if o.state != objNeed || o.slot >= 0 || !r.fresh(o.ask, now) {
			o.inList = false
			continue
		}
		keep = append(keep, id)
		inflight++
	}
	r.asked = keep
	if inflight > r.cfg.ReadAhead/2 {
		r.askDue = never
		return
	}
	if r.askDue == never {
		r.askDue = now + r.backoff()
		return
	}
	if now < r.askDue {
		return
	}
	r.askDue = never
	end := len(r.objs)
	if r.phase == phMeta {
		end = r.nMeta
	}
	want := min(r.cfg.ReadAhead-inflight, len(r.free))
	ahead := uint64(0)
	for id := r.cursor; id < end && want > 0; id++ {
		o := &r.objs[id]
		if o.state != objNeed {
			if id == r.cursor && (o.state == objHave || o.state == objWriting) {
				r.cursor++
			}
			continue
		}
		if o.slot >= 0 || r.fresh(o.ask, now) {
			continue
		}
		kind, obj := r.kindOf(id)
		r.log.Trace("ask", "obj", id, "asked", o.ask.at != never, "seen", r.dataSeen, "limit", o.ask.limit, "at", o.ask.at, "lastData", r.lastAnyData, "queued", r.bcn.queued)
		r.addEntry(kind, 0, obj, nil)
		ahead++
		o.ask = r.newAsk(now, ahead*r.objAvg)
		r.track(id)
		want--
	}
}

// addEntry adds a request entry, splitting it over datagrams as needed.
func (r *receiver) addEntry(kind, flags uint8, obj uint32, ranges []blockRange) {
	for {
		room := r.rw.room()
		if room < 0 || (len(ranges) > 0 && room == 0) {
			r.flushRequest()
			continue
		}
		k := min(len(ranges), room)
		r.rw.add(kind, flags, obj, ranges[:k])
		ranges = ranges[k:]
		if len(ranges) == 0 {
			return
		}
	}
}

func (r *receiver) flushRequest() {
	if r.rw.entries == 0 {
		return
	}
	if r.seqInit {
		r.rw.setSeen(r.instance, r.seqLast)
	}
	r.seq++
	pkt := r.auth.seal(r.out, typeRequest, r.id, r.seq, r.rw.n)
	if err := r.ctl.write(pkt); err != nil {
		r.log.Warn("send request", "error", err)
	}
	r.stats.Requests++
	r.log.Trace("request", "entries", r.rw.entries, "bytes", r.rw.n, "t", r.now())
	r.rw.reset(r.out[headerLen:maxControl-tagLen], r.tag)
}

func (r *receiver) sendStatus(state uint8) {
	st := status{state: state, tag: r.tag, instance: r.instance, held: uint32(r.held), total: uint32(r.stats.Chunks)}
	if r.seqInit {
		st.received = r.rx - r.rxDrop
		st.expected = r.seqMax - r.seqFirst + 1
	}
	if r.phase < phReceiving {
		st.held, st.total = 0, 0
	}
	buf := r.stBuf[:]
	n := st.encode(buf[headerLen:])
	r.seq++
	if err := r.ctl.write(r.auth.seal(buf, typeStatus, r.id, r.seq, n)); err != nil {
		r.log.Warn("send status", "error", err)
	}
}

func (r *receiver) becomeDone(now time.Duration) {
	r.phase = phDone
	r.log.Info("all chunks held", "chunks", r.stats.Chunks, "resumed", r.stats.Resumed, "repaired", r.stats.Repaired)
	r.sendStatus(rcvDone)
	r.doneSent = 1
	r.doneNext = now + doneRepeat
	if r.bcn.state == senderEnding {
		r.finished = true // nobody is left to acknowledge
	}
}

func (r *receiver) snapshot() ReceiverStats {
	st := r.stats
	st.Duration = r.now()
	st.Lost = r.lostBefore
	if r.seqInit {
		st.Lost += r.seqMax - r.seqFirst + 1 - min(r.rx, r.seqMax-r.seqFirst+1)
	}
	st.Malformed = r.cnt.malformed.Load()
	st.Strays = r.cnt.strays.Load()
	st.Forged = r.cnt.forged.Load()
	return st
}
