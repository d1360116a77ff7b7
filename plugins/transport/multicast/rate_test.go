package multicast

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestPacer runs the token bucket against a clock whose sleeps overshoot
// as real timers do; the average rate must still be the configured one
// and a pause must not turn into a burst.
func TestPacer(t *testing.T) {
	for _, rate := range []float64{50e6, 120e6, 300e6} {
		for _, overshoot := range []time.Duration{0, 80 * time.Microsecond, 400 * time.Microsecond, 3 * time.Millisecond} {
			var p pacer
			batch := min(max(int(rate/1000/1500), 1), sendBatch)
			p.setRate(rate, float64(batch*1500))
			now, sent := time.Duration(0), 0.0
			for now < time.Second {
				if k := p.allow(now, 1500, batch); k > 0 {
					p.spend(float64(k * 1500))
					sent += float64(k * 1500)
					continue
				}
				now += p.wait(1500, batch) + overshoot
			}
			if got := sent / now.Seconds(); got < rate*0.98 || got > rate*1.02 {
				t.Errorf("rate %.0f MB/s, sleeps overshooting by %v: sent at %.1f MB/s", rate/1e6, overshoot, got/1e6)
			}
			now += time.Second
			if k := p.allow(now, 1500, 1<<20); float64(k*1500) > max(rate*burstTime.Seconds(), float64(2*batch*1500))+1500 {
				t.Errorf("rate %.0f MB/s: after a 1 s pause %d packets may go at once", rate/1e6, k)
			}
		}
	}
}

// TestRateCtl drives the adaptive rate with a path model: loss is the
// excess of the rate over a capacity, plus a random loss independent of
// the rate. It must settle near the capacity without collapsing.
func TestRateCtl(t *testing.T) {
	tests := []struct {
		name       string
		capacity   float64
		randomLoss float64
		lo, hi     float64 // bounds of the mean rate over the last half, as a share of capacity
	}{
		{"congestion", 200e6, 0, 0.70, 1.02},
		{"random loss only", 10e9, 0.05, 0.5 * 1.25e9 / 10e9, 1.25e9 / 10e9},
		{"congestion and random loss", 200e6, 0.03, 0.6, 1.05},
		{"slow path", 20e6, 0, 0.65, 1.02},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			c := newRateCtl(0, 64e6, 1e6, 1.25e9)
			var sum float64
			const epochs = 600
			for i := range epochs {
				loss := max(0, 1-tc.capacity/c.rate) + tc.randomLoss*(0.8+0.4*rng.Float64())
				c.adjust(time.Duration(i)*rateEpoch, min(loss, 1), true, true)
				if i >= epochs/2 {
					sum += c.rate
				}
			}
			mean := sum / (epochs / 2) / tc.capacity
			t.Logf("mean rate %.2f of capacity, %d back-offs, %d undone, floor %.3f", mean, c.backoffs, c.undos, c.floor)
			if mean < tc.lo || mean > tc.hi {
				t.Errorf("mean rate %.2f of capacity, want %.2f..%.2f", mean, tc.lo, tc.hi)
			}
		})
	}
	t.Run("fixed", func(t *testing.T) {
		c := newRateCtl(100e6, 64e6, 1e6, 1.25e9)
		if c.adjust(0, 0.5, true, true) || c.rate != 100e6 {
			t.Fatalf("fixed rate changed to %.0f", c.rate)
		}
	})
}

// TestLossSignal checks that the loss signal is the lower median over the
// receivers: one lossy receiver (or a straggler) among several does not
// make the sender back off, most lossy receivers do.
func TestLossSignal(t *testing.T) {
	tests := []struct {
		name   string
		losses []float64
		cut    []bool
		backs  bool
	}{
		{"one lossy of three", []float64{0, 0.001, 0.3}, nil, false},
		{"one lossy of two", []float64{0, 0.3}, nil, false},
		{"alone and lossy", []float64{0.3}, nil, true},
		{"two lossy of three", []float64{0.2, 0.001, 0.3}, nil, true},
		{"lossy ones cut off", []float64{0.2, 0, 0.3}, []bool{true, false, true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &sender{log: hclog.NewNullLogger(), rcvs: map[uint32]*srcv{}, pktBytes: 1500,
				ctl: newRateCtl(0, 64e6, 1e6, 1.25e9)}
			s.ctl.changedAt = time.Second
			now := 2 * time.Second
			for i, l := range tc.losses {
				s.rcvs[uint32(i+1)] = &srcv{id: uint32(i + 1), haveLoss: true, loss: l,
					lossFrom: now - 100*time.Millisecond, lossAt: now, cut: tc.cut != nil && tc.cut[i]}
			}
			s.backlog = true
			s.epoch(now)
			if got := s.ctl.backoffs == 1; got != tc.backs {
				t.Fatalf("losses %v: backed off %v, want %v (rate %.0f)", tc.losses, got, tc.backs, s.ctl.rate)
			}
		})
	}
}
