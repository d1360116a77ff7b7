package multicast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
)

// DefaultMTU is the IP MTU DATA packets are sized for: a DATA packet is
// then a 1500-byte IP packet carrying 1416 bytes of a chunk.
const DefaultMTU = 1500

// Packet layout (docs/PROTOCOL.md, "Packets"):
//
//	+------------------+----------------+------------+
//	| header (24 B)    | payload (n B)  | tag (16 B) |
//	+------------------+----------------+------------+
//
// header: magic "DCMC", u8 version, u8 type, u16 n, u64 session,
// u32 node ID, u32 sequence. tag: HMAC-SHA256(key, header‖payload)[:16].
const (
	headerLen   = 24
	tagLen      = 16
	overhead    = headerLen + tagLen
	ipUDPLen    = 28 // IPv4 + UDP headers, counted by the pacer
	dataHdrLen  = 16
	beaconLen   = 76
	statusLen   = 40
	noticeEntry = 8
	maxNotice   = 64
	reqHdrLen   = 16
	reqEntryLen = 8
	maxEntries  = 255

	protoVersion = 1

	// maxDatagram bounds every datagram we send or accept (a 9000-byte
	// jumbo frame less IP and UDP headers).
	maxDatagram = 9000 - ipUDPLen
	// maxBlocks is the most blocks one object may have (u16 block index).
	maxBlocks = 65535
	// metaSegment is the size of a metadata segment.
	metaSegment = 1 << 20
	// maxMeta bounds the metadata a receiver accepts.
	maxMeta = 1 << 30
	// maxControl bounds control datagrams (STATUS, REQUEST, NOTICE): they
	// always fit a 1500-byte MTU.
	maxControl = DefaultMTU - ipUDPLen
)

var magic = [4]byte{'D', 'C', 'M', 'C'}

type ptype uint8

const (
	typeBeacon  ptype = 1
	typeData    ptype = 2
	typeNotice  ptype = 3
	typeStatus  ptype = 4
	typeRequest ptype = 5
)

func (t ptype) String() string {
	switch t {
	case typeBeacon:
		return "BEACON"
	case typeData:
		return "DATA"
	case typeNotice:
		return "NOTICE"
	case typeStatus:
		return "STATUS"
	case typeRequest:
		return "REQUEST"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Object kinds.
const (
	kindChunk = 0
	kindMeta  = 1
)

// DATA flags.
const (
	flagLast   = 1 << 0
	flagResend = 1 << 1
)

// REQUEST entry flags.
const flagRepair = 1 << 0

// Sender states in BEACON.
const (
	senderWaiting = 1
	senderRunning = 2
	senderEnding  = 3
)

// Receiver states in STATUS.
const (
	rcvListening = 1
	rcvReceiving = 2
	rcvDone      = 3
	rcvCut       = 4
	rcvLeaving   = 5
)

// NOTICE codes.
const (
	noticeDoneAck = 1
	noticeCutOff  = 2
)

// blockSizeFor returns the chunk bytes per DATA packet at an IP MTU.
func blockSizeFor(mtu int) int {
	return mtu - ipUDPLen - overhead - dataHdrLen
}

type header struct {
	typ     ptype
	session uint64
	node    uint32
	seq     uint32
}

// auth seals and opens packets of one session. It is not safe for
// concurrent use: each goroutine that sends or receives has its own.
type auth struct {
	session uint64
	mac     hash.Hash
	sum     [sha256.Size]byte
}

func newAuth(session uint64, key []byte) *auth {
	return &auth{session: session, mac: hmac.New(sha256.New, key)}
}

// tag computes the truncated HMAC of b into a.sum and returns it.
func (a *auth) tag(b []byte) []byte {
	a.mac.Reset()
	a.mac.Write(b)
	return a.mac.Sum(a.sum[:0])[:tagLen]
}

// seal writes the header into pkt[:24], expects the payload in
// pkt[24:24+n], appends the tag and returns the whole datagram.
func (a *auth) seal(pkt []byte, typ ptype, node, seq uint32, n int) []byte {
	copy(pkt[0:4], magic[:])
	pkt[4] = protoVersion
	pkt[5] = byte(typ)
	binary.LittleEndian.PutUint16(pkt[6:], uint16(n))
	binary.LittleEndian.PutUint64(pkt[8:], a.session)
	binary.LittleEndian.PutUint32(pkt[16:], node)
	binary.LittleEndian.PutUint32(pkt[20:], seq)
	end := headerLen + n
	copy(pkt[end:end+tagLen], a.tag(pkt[:end]))
	return pkt[:end+tagLen]
}

// open checks a datagram (length, magic, version, session, then tag) and
// returns its header and payload. The error is errMalformed, errStray or
// errForged itself: bad packets are only counted, and a flood of them
// should cost no more than the check.
func (a *auth) open(pkt []byte) (header, []byte, error) {
	var h header
	if len(pkt) < overhead || [4]byte(pkt[0:4]) != magic || pkt[4] != protoVersion {
		return h, nil, errMalformed
	}
	n := int(binary.LittleEndian.Uint16(pkt[6:]))
	if headerLen+n+tagLen != len(pkt) {
		return h, nil, errMalformed
	}
	h.typ = ptype(pkt[5])
	h.session = binary.LittleEndian.Uint64(pkt[8:])
	h.node = binary.LittleEndian.Uint32(pkt[16:])
	h.seq = binary.LittleEndian.Uint32(pkt[20:])
	if h.session != a.session {
		return h, nil, errStray
	}
	end := headerLen + n
	if !hmac.Equal(a.tag(pkt[:end]), pkt[end:]) {
		return h, nil, errForged
	}
	if h.typ < typeBeacon || h.typ > typeRequest || h.node == 0 {
		return h, nil, errMalformed
	}
	return h, pkt[headerLen:end], nil
}

// beacon is the BEACON payload.
type beacon struct {
	state     uint8
	blockSize uint16
	chunks    uint32
	metaSize  uint64
	metaHash  [32]byte
	rate      uint64
	queued    uint64
	receivers uint32
	statusMs  uint16
	segSize   uint32
}

// imageTag is the image identity carried by DATA, STATUS and REQUEST.
func imageTag(metaHash [32]byte) uint32 {
	return binary.LittleEndian.Uint32(metaHash[:4])
}

func (b *beacon) encode(p []byte) int {
	p[0] = b.state
	p[1] = 0
	binary.LittleEndian.PutUint16(p[2:], b.blockSize)
	binary.LittleEndian.PutUint32(p[4:], b.chunks)
	binary.LittleEndian.PutUint64(p[8:], b.metaSize)
	copy(p[16:48], b.metaHash[:])
	binary.LittleEndian.PutUint64(p[48:], b.rate)
	binary.LittleEndian.PutUint64(p[56:], b.queued)
	binary.LittleEndian.PutUint32(p[64:], b.receivers)
	binary.LittleEndian.PutUint16(p[68:], b.statusMs)
	binary.LittleEndian.PutUint16(p[70:], 0)
	binary.LittleEndian.PutUint32(p[72:], b.segSize)
	return beaconLen
}

func decodeBeacon(p []byte) (beacon, error) {
	var b beacon
	if len(p) != beaconLen {
		return b, fmt.Errorf("%w: BEACON payload of %d bytes, want %d", errMalformed, len(p), beaconLen)
	}
	b.state = p[0]
	b.blockSize = binary.LittleEndian.Uint16(p[2:])
	b.chunks = binary.LittleEndian.Uint32(p[4:])
	b.metaSize = binary.LittleEndian.Uint64(p[8:])
	copy(b.metaHash[:], p[16:48])
	b.rate = binary.LittleEndian.Uint64(p[48:])
	b.queued = binary.LittleEndian.Uint64(p[56:])
	b.receivers = binary.LittleEndian.Uint32(p[64:])
	b.statusMs = binary.LittleEndian.Uint16(p[68:])
	b.segSize = binary.LittleEndian.Uint32(p[72:])
	switch {
	case b.state < senderWaiting || b.state > senderEnding:
		return b, fmt.Errorf("%w: BEACON state %d", errMalformed, b.state)
	case int(b.blockSize) < 64 || int(b.blockSize) > maxDatagram-overhead-dataHdrLen:
		return b, fmt.Errorf("%w: BEACON block size %d", errMalformed, b.blockSize)
	case b.metaSize == 0 || b.metaSize > maxMeta:
		return b, fmt.Errorf("%w: BEACON metadata size %d outside 1..%d", errMalformed, b.metaSize, maxMeta)
	case b.segSize == 0 || uint64(b.segSize) > uint64(b.blockSize)*maxBlocks:
		return b, fmt.Errorf("%w: BEACON metadata segment size %d", errMalformed, b.segSize)
	case b.chunks > 1<<31-1:
		return b, fmt.Errorf("%w: BEACON chunk count %d", errMalformed, b.chunks)
	}
	return b, nil
}

// dataHdr is the fixed part of a DATA payload.
type dataHdr struct {
	kind  uint8
	flags uint8
	block uint16
	obj   uint32
	size  uint32
	tag   uint32
}

func (d *dataHdr) encode(p []byte) {
	p[0] = d.kind
	p[1] = d.flags
	binary.LittleEndian.PutUint16(p[2:], d.block)
	binary.LittleEndian.PutUint32(p[4:], d.obj)
	binary.LittleEndian.PutUint32(p[8:], d.size)
	binary.LittleEndian.PutUint32(p[12:], d.tag)
}

// decodeData checks a DATA payload against the block size of the session
// and returns its header and block bytes.
func decodeData(p []byte, blockSize int) (dataHdr, []byte, error) {
	var d dataHdr
	if len(p) <= dataHdrLen {
		return d, nil, fmt.Errorf("%w: DATA payload of %d bytes", errMalformed, len(p))
	}
	d.kind = p[0]
	d.flags = p[1]
	d.block = binary.LittleEndian.Uint16(p[2:])
	d.obj = binary.LittleEndian.Uint32(p[4:])
	d.size = binary.LittleEndian.Uint32(p[8:])
	d.tag = binary.LittleEndian.Uint32(p[12:])
	blk := p[dataHdrLen:]
	if d.kind > kindMeta {
		return d, nil, fmt.Errorf("%w: DATA kind %d", errMalformed, d.kind)
	}
	if blockSize <= 0 {
		return d, nil, fmt.Errorf("%w: DATA before the block size is known", errMalformed)
	}
	nb := (int64(d.size) + int64(blockSize) - 1) / int64(blockSize)
	if d.size == 0 || nb > maxBlocks {
		return d, nil, fmt.Errorf("%w: DATA object %d size %d", errMalformed, d.obj, d.size)
	}
	if int64(d.block) >= nb {
		return d, nil, fmt.Errorf("%w: DATA object %d block %d beyond %d blocks", errMalformed, d.obj, d.block, nb)
	}
	want := min(int64(blockSize), int64(d.size)-int64(d.block)*int64(blockSize))
	if int64(len(blk)) != want {
		return d, nil, fmt.Errorf("%w: DATA object %d block %d has %d bytes, want %d", errMalformed, d.obj, d.block, len(blk), want)
	}
	return d, blk, nil
}

type noticeEnt struct {
	id   uint32
	code uint8
}

func encodeNotice(p []byte, ents []noticeEnt) int {
	binary.LittleEndian.PutUint16(p[0:], uint16(len(ents)))
	binary.LittleEndian.PutUint16(p[2:], 0)
	o := 4
	for _, e := range ents {
		binary.LittleEndian.PutUint32(p[o:], e.id)
		p[o+4] = e.code
		p[o+5], p[o+6], p[o+7] = 0, 0, 0
		o += noticeEntry
	}
	return o
}

// decodeNotice calls fn for every entry of a valid NOTICE payload.
func decodeNotice(p []byte, fn func(noticeEnt)) error {
	if len(p) < 4 {
		return fmt.Errorf("%w: NOTICE payload of %d bytes", errMalformed, len(p))
	}
	n := int(binary.LittleEndian.Uint16(p))
	if n == 0 || n > maxNotice || len(p) != 4+n*noticeEntry {
		return fmt.Errorf("%w: NOTICE of %d entries in %d bytes", errMalformed, n, len(p))
	}
	for i := range n {
		o := 4 + i*noticeEntry
		e := noticeEnt{id: binary.LittleEndian.Uint32(p[o:]), code: p[o+4]}
		if e.code != noticeDoneAck && e.code != noticeCutOff {
			return fmt.Errorf("%w: NOTICE entry %d code %d", errMalformed, i, e.code)
		}
	}
	for i := range n {
		o := 4 + i*noticeEntry
		fn(noticeEnt{id: binary.LittleEndian.Uint32(p[o:]), code: p[o+4]})
	}
	return nil
}

// status is the STATUS payload.
type status struct {
	state    uint8
	tag      uint32
	instance uint32
	held     uint32
	total    uint32
	received uint64
	expected uint64
}

func (s *status) encode(p []byte) int {
	clear(p[:statusLen])
	p[0] = s.state
	binary.LittleEndian.PutUint32(p[4:], s.tag)
	binary.LittleEndian.PutUint32(p[8:], s.instance)
	binary.LittleEndian.PutUint32(p[12:], s.held)
	binary.LittleEndian.PutUint32(p[16:], s.total)
	binary.LittleEndian.PutUint64(p[24:], s.received)
	binary.LittleEndian.PutUint64(p[32:], s.expected)
	return statusLen
}

func decodeStatus(p []byte) (status, error) {
	var s status
	if len(p) != statusLen {
		return s, fmt.Errorf("%w: STATUS payload of %d bytes, want %d", errMalformed, len(p), statusLen)
	}
	s.state = p[0]
	s.tag = binary.LittleEndian.Uint32(p[4:])
	s.instance = binary.LittleEndian.Uint32(p[8:])
	s.held = binary.LittleEndian.Uint32(p[12:])
	s.total = binary.LittleEndian.Uint32(p[16:])
	s.received = binary.LittleEndian.Uint64(p[24:])
	s.expected = binary.LittleEndian.Uint64(p[32:])
	if s.state < rcvListening || s.state > rcvLeaving {
		return s, fmt.Errorf("%w: STATUS state %d", errMalformed, s.state)
	}
	if s.held > s.total {
		return s, fmt.Errorf("%w: STATUS holds %d of %d chunks", errMalformed, s.held, s.total)
	}
	return s, nil
}

// blockRange is a run of blocks in a REQUEST entry.
type blockRange struct{ first, count uint16 }

// reqEntry asks for blocks of one object; no ranges means every block.
type reqEntry struct {
	kind   uint8
	flags  uint8
	obj    uint32
	ranges []blockRange
}

// request is the REQUEST payload. instance and seen name the sender
// packet the request was based on: the highest sequence number the
// receiver had from that sender instance (instance 0: none).
type request struct {
	tag      uint32
	instance uint32
	seen     uint32
	entries  []reqEntry
}

// reqWriter fills one REQUEST payload.
type reqWriter struct {
	p       []byte // the payload area of a datagram, at most maxControl-overhead bytes
	n       int
	entries int
}

func (w *reqWriter) reset(p []byte, tag uint32) {
	w.p = p
	clear(p[:reqHdrLen])
	binary.LittleEndian.PutUint32(p[0:], tag)
	w.n = reqHdrLen
	w.entries = 0
}

// setSeen records the sender packet the request is based on.
func (w *reqWriter) setSeen(instance, seen uint32) {
	binary.LittleEndian.PutUint32(w.p[4:], instance)
	binary.LittleEndian.PutUint32(w.p[8:], seen)
}

// room reports how many ranges an entry could still carry (-1: no entry
// fits at all).
func (w *reqWriter) room() int {
	if w.entries >= maxEntries {
		return -1
	}
	free := len(w.p) - w.n - reqEntryLen
	if free < 0 {
		return -1
	}
	return min(free/4, 65535)
}

// add appends an entry; the caller checked room.
func (w *reqWriter) add(kind, flags uint8, obj uint32, ranges []blockRange) {
	p := w.p[w.n:]
	p[0] = kind
	p[1] = flags
	binary.LittleEndian.PutUint16(p[2:], uint16(len(ranges)))
	binary.LittleEndian.PutUint32(p[4:], obj)
	o := reqEntryLen
	for _, r := range ranges {
		binary.LittleEndian.PutUint16(p[o:], r.first)
		binary.LittleEndian.PutUint16(p[o+2:], r.count)
		o += 4
	}
	w.n += o
	w.entries++
	binary.LittleEndian.PutUint16(w.p[12:], uint16(w.entries))
}

func decodeRequest(p []byte) (request, error) {
	var r request
	if len(p) < reqHdrLen+reqEntryLen {
		return r, fmt.Errorf("%w: REQUEST payload of %d bytes", errMalformed, len(p))
	}
	r.tag = binary.LittleEndian.Uint32(p[0:])
	r.instance = binary.LittleEndian.Uint32(p[4:])
	r.seen = binary.LittleEndian.Uint32(p[8:])
	n := int(binary.LittleEndian.Uint16(p[12:]))
	if n == 0 || n > maxEntries {
		return r, fmt.Errorf("%w: REQUEST with %d entries", errMalformed, n)
	}
	r.entries = make([]reqEntry, 0, n)
	o := reqHdrLen
	for i := range n {
		if len(p)-o < reqEntryLen {
			return r, fmt.Errorf("%w: REQUEST entry %d truncated at byte %d", errMalformed, i, o)
		}
		e := reqEntry{kind: p[o], flags: p[o+1], obj: binary.LittleEndian.Uint32(p[o+4:])}
		nr := int(binary.LittleEndian.Uint16(p[o+2:]))
		o += reqEntryLen
		if e.kind > kindMeta {
			return r, fmt.Errorf("%w: REQUEST entry %d kind %d", errMalformed, i, e.kind)
		}
		if len(p)-o < 4*nr {
			return r, fmt.Errorf("%w: REQUEST entry %d: %d ranges truncated at byte %d", errMalformed, i, nr, o)
		}
		if nr > 0 {
			e.ranges = make([]blockRange, nr)
			next := 0
			for j := range nr {
				br := blockRange{first: binary.LittleEndian.Uint16(p[o:]), count: binary.LittleEndian.Uint16(p[o+2:])}
				o += 4
				if br.count == 0 || int(br.first) < next || int(br.first)+int(br.count) > maxBlocks {
					return r, fmt.Errorf("%w: REQUEST entry %d range %d (%d+%d) empty, out of order or beyond %d blocks", errMalformed, i, j, br.first, br.count, maxBlocks)
				}
				next = int(br.first) + int(br.count)
				e.ranges[j] = br
			}
		}
		r.entries = append(r.entries, e)
	}
	if o != len(p) {
		return r, fmt.Errorf("%w: REQUEST has %d trailing bytes", errMalformed, len(p)-o)
	}
	return r, nil
}
