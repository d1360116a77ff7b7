package multicast

import (
	"context"
	"testing"
	"time"
)

// TestTransferThreeReceivers sends 64 MiB of varied chunks to three
// receivers at the adaptive rate; every target must equal the source.
func TestTransferThreeReceivers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := source64()
	g := testGroup()
	scfg := senderCfg(t, g, 0x1001)
	scfg.MinReceivers = 3
	scfg.MaxWait = 5 * time.Second
	var sinks []*memSink
	var rchs []<-chan recvResult
	for range 3 {
		m := &memSink{keep: true}
		sinks = append(sinks, m)
		rchs = append(rchs, goReceive(ctx, receiverCfg(t, g, 0x1001), m))
	}
	sch := goSend(ctx, scfg, src)
	for i, ch := range rchs {
		r := <-ch
		if r.err != nil {
			t.Fatalf("receiver %d: %v", i, r.err)
		}
		t.Logf("receiver %d: %v, %.0f MB/s, %+v", i, r.took, float64(len(src.data))/r.took.Seconds()/1e6, r.stats)
		sinks[i].check(t, "receiver", src)
		if r.stats.Received != len(src.sizes) || r.stats.Forged != 0 || r.stats.Strays != 0 {
			t.Errorf("receiver %d: received %d of %d chunks, forged %d, strays %d", i, r.stats.Received, len(src.sizes), r.stats.Forged, r.stats.Strays)
		}
	}
	s := <-sch
	if s.err != nil {
		t.Fatalf("sender: %v", s.err)
	}
	t.Logf("sender: %+v dup %.2f%%", s.stats, 100*s.stats.DuplicateRatio())
	if s.stats.Completed != 3 {
		t.Errorf("sender saw %d receivers complete, want 3", s.stats.Completed)
	}
}
