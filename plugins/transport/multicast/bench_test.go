package multicast

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func dataPacket(a *auth, blockSize int) ([]byte, []byte) {
	buf := make([]byte, DefaultMTU-ipUDPLen)
	d := dataHdr{kind: kindChunk, block: 7, obj: 1234, size: 1 << 20, tag: 0xabcdef01}
	d.encode(buf[headerLen:])
	for i := range blockSize {
		buf[headerLen+dataHdrLen+i] = byte(i)
	}
	return buf, a.seal(buf, typeData, 0x1234, 99, dataHdrLen+blockSize)
}

// BenchmarkSeal is the sender's per-packet cost: DATA header, block copy
// excluded, HMAC-SHA256 tag.
func BenchmarkSeal(b *testing.B) {
	a := newAuth(1, testKey)
	bs := blockSizeFor(DefaultMTU)
	buf, _ := dataPacket(a, bs)
	d := dataHdr{kind: kindChunk, obj: 1234, size: 1 << 20, tag: 0xabcdef01}
	b.SetBytes(int64(bs))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.block = uint16(i)
		d.encode(buf[headerLen:])
		a.seal(buf, typeData, 0x1234, uint32(i), dataHdrLen+bs)
	}
}

// BenchmarkOpen is the receiver's per-packet cost: header checks, tag
// verification and DATA decoding.
func BenchmarkOpen(b *testing.B) {
	a := newAuth(1, testKey)
	bs := blockSizeFor(DefaultMTU)
	_, pkt := dataPacket(a, bs)
	b.SetBytes(int64(bs))
	b.ReportAllocs()
	for b.Loop() {
		_, p, err := a.open(pkt)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := decodeData(p, bs); err != nil {
			b.Fatal(err)
		}
	}
}

var (
	src256Once sync.Once
	src256     *testSource
)

// BenchmarkTransfer sends 256 MiB over loopback multicast to 1 and to 3
// receivers (all in this process, so on a 2-core host they share the
// CPU with the sender), at the adaptive rate and at a fixed 50 MB/s, and
// reports the throughput of the slowest receiver (MB/s of image data),
// the IP rate the sender kept (ipMB/s; at a fixed rate, its accuracy),
// the share of duplicate data and CPU per GB.
func BenchmarkTransfer(b *testing.B) {
	src256Once.Do(func() { src256 = newTestSource(2, 256<<20) })
	for _, tc := range []struct {
		n    int
		rate int64
	}{{1, 0}, {3, 0}, {1, 50e6}, {3, 50e6}} {
		name := fmt.Sprintf("receivers=%d", tc.n)
		if tc.rate > 0 {
			name += fmt.Sprintf("/rate=%dMB", tc.rate/1e6)
		}
		n := tc.n
		b.Run(name, func(b *testing.B) {
			var mbps, dup, rdup, cpu, ip float64
			runs := 0
			for b.Loop() {
				before := cpuTime(nil)
				st, rs, took := benchTransfer(b, src256, n, tc.rate)
				ip += float64(st.Bytes) / took.Seconds() / 1e6
				cpu += (cpuTime(nil) - before).Seconds() / (float64(n*len(src256.data)) / 1e9)
				mbps += float64(len(src256.data)) / took.Seconds() / 1e6
				dup += 100 * st.DuplicateRatio()
				for _, r := range rs {
					rdup += 100 * r.DuplicateRatio() / float64(len(rs))
				}
				runs++
			}
			b.ReportMetric(mbps/float64(runs), "MB/s")
			b.ReportMetric(ip/float64(runs), "ipMB/s")
			b.ReportMetric(dup/float64(runs), "resent%")
			b.ReportMetric(rdup/float64(runs), "rcvdup%")
			// CPU of the whole process (sender, receivers, SHA-256 in the
			// sinks) per GB delivered to a receiver: unlike MB/s, a busy
			// host does not inflate it much.
			b.ReportMetric(cpu/float64(runs), "cpu-s/GB")
		})
	}
}

func benchTransfer(b *testing.B, src *testSource, n int, rate int64) (SenderStats, []ReceiverStats, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := testGroup()
	scfg := senderCfg(b, g, 0xbe7c)
	scfg.MinReceivers = n
	scfg.Rate = rate
	var rchs []<-chan recvResult
	for range n {
		rchs = append(rchs, goReceive(ctx, receiverCfg(b, g, 0xbe7c), &memSink{}))
	}
	sch := goSend(ctx, scfg, src)
	var rs []ReceiverStats
	var slowest time.Duration
	for _, ch := range rchs {
		r := <-ch
		if r.err != nil {
			b.Fatalf("receiver: %v", r.err)
		}
		rs = append(rs, r.stats)
		slowest = max(slowest, r.stats.Duration)
	}
	s := <-sch
	if s.err != nil {
		b.Fatalf("sender: %v", s.err)
	}
	b.Logf("sender: %+v", s.stats)
	for i, r := range rs {
		b.Logf("receiver %d: %+v", i, r)
	}
	return s.stats, rs, slowest
}

type nopSink struct{}

func (nopSink) Meta([]byte) (int, func(int) bool, error) { return 0, nil, nil }
func (nopSink) Chunk(int, []byte) error                  { return nil }

// BenchmarkReceivePath measures the receiver's per-datagram work on its
// own goroutine, without the socket: tag check, decoding, bookkeeping
// and the copy into the chunk buffer (1416 bytes of chunk data each).
// Complete chunks go to a writer goroutine that does nothing.
func BenchmarkReceivePath(b *testing.B) {
	src := source16()
	a := newAuth(7, testKey)
	tag := imageTag(sha256Of(src.meta))
	bs := blockSizeFor(DefaultMTU)
	var pkts [][]byte
	for i := range src.sizes {
		c := src.chunk(i)
		for blk := 0; blk*bs < len(c); blk++ {
			buf := make([]byte, DefaultMTU-ipUDPLen)
			d := dataHdr{kind: kindChunk, block: uint16(blk), obj: uint32(i), size: uint32(len(c)), tag: tag}
			d.encode(buf[headerLen:])
			n := copy(buf[headerLen+dataHdrLen:], c[blk*bs:min(len(c), (blk+1)*bs)])
			pkts = append(pkts, a.seal(buf, typeData, 0x5e5d, uint32(len(pkts)+1), dataHdrLen+n))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nslots := 40
	r := &receiver{cfg: ReceiverConfig{ReadAhead: 16}, auth: newAuth(7, testKey), sink: nopSink{}, ctx: ctx,
		curObj: -1, askDue: never, slots: make([]rslot, nslots), objAvg: 1 << 20,
		jobs: make(chan writeJob, nslots), results: make(chan writeResult, nslots),
		haveBeacon: true, instance: 0x5e5d, tag: tag, blockSize: bs, nMeta: 1, phase: phReceiving,
		bcn: beacon{state: senderRunning, blockSize: uint16(bs), segSize: metaSegment}}
	for i := range r.slots {
		r.slots[i].obj = -1
		r.free = append(r.free, i)
	}
	reset := func() {
		// One more chunk than is sent keeps the receiver from finishing.
		r.objs = make([]robj, 1+len(src.sizes)+1)
		for i := range r.objs {
			r.objs[i] = robj{state: objNeed, slot: -1, ask: noAsk}
		}
		r.objs[0].state = objHave
		r.heldBits = make([]uint64, (len(src.sizes)+64)/64)
		r.held = 0
	}
	reset()
	go func() {
		for j := range r.jobs {
			r.results <- writeResult{writeJob: j}
		}
	}()
	defer close(r.jobs)
	b.SetBytes(int64(bs))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.onPacket(pkts[i], 0)
		if i++; i%64 == 0 || i == len(pkts) {
			r.drain(0)
		}
		if i == len(pkts) {
			for r.writing > 0 {
				r.onWritten(<-r.results, 0)
			}
			if r.held != len(src.sizes) {
				b.Fatalf("held %d of %d chunks", r.held, len(src.sizes))
			}
			reset()
			i = 0
		}
	}
}

// BenchmarkRawLoopback is the baseline for BenchmarkTransfer: the same
// sockets (sendmmsg of 64 datagrams, recvmmsg) moving 1472-byte
// datagrams over loopback multicast with no protocol at all. Datagrams
// the receiver drops are not retried; MB/s counts what arrived.
func BenchmarkRawLoopback(b *testing.B) {
	g := testGroup()
	ctx := context.Background()
	lo, err := resolveInterface("", net.IPv4(127, 0, 0, 1))
	if err != nil {
		b.Fatal(err)
	}
	dst := &net.UDPAddr{IP: g.IP, Port: g.Port}
	rc, err := openConn(ctx, sockOpts{group: g.IP, port: g.Port, dst: dst, ifi: lo, ttl: 0, rcvbuf: 16 << 20, batch: recvBatch, bufSize: maxDatagram + 1})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.close()
	sc, err := openConn(ctx, sockOpts{group: g.IP, port: g.Port + 1, dst: dst, ifi: lo, ttl: 0, sndbuf: 4 << 20, batch: 1, bufSize: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer sc.close()
	pkts := make([][]byte, sendBatch)
	for i := range pkts {
		pkts[i] = make([]byte, DefaultMTU-ipUDPLen)
	}
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := rc.readBatch(time.Now().Add(200 * time.Millisecond))
			if err != nil || n == 0 {
				return
			}
			got.Add(int64(n))
		}
	}()
	const total = 180000 // about 256 MiB
	t0 := time.Now()
	for b.Loop() {
		for sent := 0; sent < total; sent += sendBatch {
			if err := sc.writeBatch(pkts); err != nil {
				b.Fatal(err)
			}
		}
	}
	took := time.Since(t0)
	<-done
	b.ReportMetric(float64(got.Load())*float64(DefaultMTU-ipUDPLen)/took.Seconds()/1e6, "MB/s")
	b.ReportMetric(100*(1-float64(got.Load())/float64(b.N*total)), "lost%")
}
