package multicast

import "time"

// pacer is a token bucket counted in IP bytes. It holds at most burst
// tokens: enough to make up for a late wake-up of a few milliseconds (a
// busy host delays timers), so the average rate holds, but not so many
// that a sender that paused (no work, a slow read) floods receivers when
// it resumes.
type pacer struct {
	rate   float64 // bytes per second
	tokens float64
	burst  float64
	last   time.Duration
}

// setRate changes the rate; batch is the bytes of one full batch, the
// smallest burst that lets a batch go at once.
func (p *pacer) setRate(rate, batch float64) {
	p.rate = rate
	p.burst = max(2*batch, rate*burstTime.Seconds())
	p.tokens = min(p.tokens, p.burst)
}

func (p *pacer) refill(now time.Duration) {
	if now > p.last {
		p.tokens = min(p.burst, p.tokens+(now-p.last).Seconds()*p.rate)
	}
	p.last = now
}

// allow returns how many packets of size sz (at most n) tokens cover now.
func (p *pacer) allow(now time.Duration, sz float64, n int) int {
	p.refill(now)
	if p.tokens < sz {
		return 0
	}
	return min(n, int(p.tokens/sz))
}

// spend takes the tokens of bytes actually sent.
func (p *pacer) spend(bytes float64) { p.tokens -= bytes }

// wait returns how long until n packets of size sz are covered.
func (p *pacer) wait(sz float64, n int) time.Duration {
	need := sz*float64(n) - p.tokens
	if need <= 0 {
		return 0
	}
	return time.Duration(need / p.rate * float64(time.Second))
}

// rateCtl is the adaptive rate (docs/PROTOCOL.md, "Adaptive rate"): slow
// start until the first back-off, then multiplicative decrease on loss
// and additive increase, with a learned floor of loss that does not
// depend on the rate (random loss on a path), so it cannot collapse.
type rateCtl struct {
	fixed     bool
	rate      float64
	min, max  float64
	slowStart bool
	floor     float64       // learned rate-independent loss
	lastCut   float64       // rate before the last back-off
	changedAt time.Duration // samples must start after this
	probe     bool          // a back-off awaits its first clean sample
	probeLoss float64
	probeRate float64
	probeSS   bool
	backoffs  int
	undos     int
}

const (
	lossMargin   = 0.01  // back off when loss exceeds the floor by this
	lossProbe    = 0.003 // probe upward only below the floor plus this
	backoff      = 0.75
	minIncrement = 256 << 10
	rateEpoch    = 100 * time.Millisecond
	burstTime    = 5 * time.Millisecond
	batchTime    = 4 * time.Millisecond
)

func newRateCtl(fixed, initial, lo, hi float64) *rateCtl {
	if fixed > 0 {
		return &rateCtl{fixed: true, rate: fixed, min: fixed, max: fixed}
	}
	return &rateCtl{rate: min(initial, hi), min: lo, max: hi, slowStart: true}
}

// adjust runs once per rate epoch with the loss signal (ok is false when
// no clean sample exists) and whether the pacer limited the sender. It
// reports whether the rate changed.
func (c *rateCtl) adjust(now time.Duration, loss float64, ok, backlogged bool) bool {
	if c.fixed || !ok {
		return false
	}
	c.floor *= 0.99
	if c.probe {
		c.probe = false
		// Had the loss been caused by the rate, cutting the rate by a
		// quarter would have cut it to 1-(1-L)/0.75. If the new loss is
		// closer to the old one than to that, the loss does not depend
		// on the rate: undo the back-off and learn it as the floor.
		congestive := max(0, 1-(1-c.probeLoss)/backoff)
		if loss > (c.probeLoss+congestive)/2 {
			c.rate = c.probeRate
			c.slowStart = c.probeSS
			c.floor = loss
			c.undos++
			c.changedAt = now
			return true
		}
	}
	if loss > c.floor+lossMargin {
		c.lastCut = c.rate
		c.probe, c.probeLoss, c.probeRate, c.probeSS = true, loss, c.rate, c.slowStart
		c.rate = max(c.min, c.rate*backoff)
		c.slowStart = false
		c.backoffs++
		c.changedAt = now
		return true
	}
	if !backlogged || c.rate >= c.max {
		return false
	}
	switch {
	case c.slowStart:
		c.rate = min(c.max, c.rate*2)
	case loss < c.floor+lossProbe:
		c.rate = min(c.max, c.rate+max(minIncrement, c.lastCut/16))
	default:
		return false
	}
	c.changedAt = now
	return true
}
