package agent

import (
	"context"
	"sync"
	"time"

	"github.com/diskcast/diskcast/core/api"
	"github.com/diskcast/diskcast/core/orchestrator"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/hashicorp/go-hclog"
)

// reportEvery is how often the agent reports progress.
const reportEvery = time.Second

// reporter posts the node's progress until stopped.
type reporter struct {
	node   *api.Client
	ctx    context.Context
	mu     sync.Mutex
	state  string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func startReporter(ctx context.Context, node *api.Client, sink *transfer.Sink, log hclog.Logger) *reporter {
	ctx, cancel := context.WithCancel(ctx)
	r := &reporter{node: node, ctx: ctx, state: "receiving", cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(reportEvery)
		defer tick.Stop()
		for {
			r.mu.Lock()
			p := &orchestrator.Progress{State: r.state}
			r.mu.Unlock()
			if res := sink.Result(); p.State == "receiving" {
				p.Bytes, p.Chunks = res.DataBytes, res.Chunks
				if t := sink.Total(); t > 0 {
					p.Total, p.ChunksTotal = t, sink.ChunksTotal()
				}
			}
			if _, err := node.Progress(ctx, p); err != nil && ctx.Err() == nil {
				log.Warn("progress report failed", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

// setState moves to the next state and reports it at once.
func (r *reporter) setState(s string) {
	r.mu.Lock()
	r.state = s
	r.mu.Unlock()
	r.node.Progress(r.ctx, &orchestrator.Progress{State: s})
}

func (r *reporter) stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}
