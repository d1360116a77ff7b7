package orchestrator

import (
	"sync"
	"time"
)

// Event types.
const (
	EventSession    = "session"    // a session changed state
	EventNode       = "node"       // a member changed state
	EventProgress   = "progress"   // a member reported progress
	EventDiscovered = "discovered" // an unknown MAC asked for work
	// EventReady is the first event of every subscription: from here on
	// nothing is missed. Its Seq is that of the last event before it, so
	// a client can fetch a status snapshot and apply later events.
	EventReady = "ready"
)

// Event is one change, as streamed by GET /api/v1/events.
type Event struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Session string    `json:"session,omitempty"`
	Run     int       `json:"run,omitempty"`
	Node    string    `json:"node,omitempty"`
	MAC     string    `json:"mac,omitempty"`
	State   string    `json:"state,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Bytes   int64     `json:"bytes,omitempty"`
	Total   int64     `json:"total,omitempty"`
	Rate    float64   `json:"rate,omitempty"` // bytes/s
}

// broker fans events out to subscribers. A subscriber that falls behind
// loses events rather than slowing the orchestrator; Seq shows the gap.
type broker struct {
	mu   sync.Mutex
	seq  uint64
	subs map[chan Event]string // channel → session filter ("" for all)
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	e.Seq = b.seq
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for ch, filter := range b.subs {
		if filter != "" && filter != e.Session {
			continue
		}
		select {
		case ch <- e:
		default: // full: drop for this subscriber
		}
	}
}

// Subscribe returns a channel of events about session (all sessions when
// ""), starting with an EventReady, and a function that ends the
// subscription and closes the channel.
func (o *Orchestrator) Subscribe(session string) (<-chan Event, func()) {
	b := &o.events
	ch := make(chan Event, 256)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[chan Event]string{}
	}
	b.subs[ch] = session
	ch <- Event{Seq: b.seq, Time: time.Now(), Type: EventReady, Session: session}
	b.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
			close(ch)
		})
	}
}
