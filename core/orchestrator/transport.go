package orchestrator

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/transfer"
	"github.com/diskcast/diskcast/sdk/transport"
)

// PluginDeployer sends sessions through a transport plugin, such as the
// built-in multicast one. Transport returns the plugin's client (started
// once by the plugin manager); it is called at each Start, so a plugin
// that died is started again for the next run.
type PluginDeployer struct {
	Transport func(ctx context.Context) (transport.Client, error)
}

// Start opens the session's image and sends it until the transport ends
// the session or Stop is called.
func (d PluginDeployer) Start(_ context.Context, spec *SessionSpec) (Running, error) {
	tr, err := d.Transport(context.Background())
	if err != nil {
		return nil, err
	}
	img, err := image.Open(spec.ImagePath)
	if err != nil {
		return nil, err
	}
	if img.Header.ID.String() != spec.ImageID {
		img.Close()
		return nil, fmt.Errorf("image %s changed on disk: it is now %s, the session was started with %s", spec.ImagePath, img.Header.ID, spec.ImageID)
	}
	params := map[string]string{
		"group":         spec.Group.String(),
		"session_id":    strconv.FormatUint(spec.SessionID, 10),
		"key":           hex.EncodeToString(spec.Key),
		"rate":          strconv.FormatInt(spec.RateBytes, 10),
		"min_receivers": strconv.Itoa(max(spec.MinReceivers, 1)),
		"min_wait":      spec.MinWait.String(),
		"max_wait":      spec.MaxWait.String(),
	}
	if spec.Interface != "" {
		params["interface"] = spec.Interface
	}
	if spec.Interface == "lo" {
		params["host_only"] = "true" // a demo or test on one host
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &pluginRun{cancel: cancel, done: make(chan struct{})}
	src := transfer.NewSource(img.Reader)
	src.OnProgress = func(st transport.Stats) { r.stats.Store(&st) }
	go func() {
		defer close(r.done)
		defer img.Close()
		st, err := tr.Send(ctx, transport.Session{ID: spec.Session, Params: params}, src)
		r.stats.Store(&st)
		if ctx.Err() == nil && err != nil {
			r.err = err
			if spec.Logger != nil {
				spec.Logger.Error("send failed", "error", err)
			}
		} else if spec.Logger != nil {
			spec.Logger.Info("send ended", "receivers", st.Receivers, "completed", st.Completed, "bytes", st.Bytes, "retransmitted_bytes", st.RetransmittedBytes)
		}
	}()
	return r, nil
}

type pluginRun struct {
	stats    atomic.Pointer[transport.Stats]
	cancel   context.CancelFunc
	stopOnce sync.Once
	done     chan struct{}
	err      error // set before done is closed
}

func (r *pluginRun) Stats() DeployStats {
	st := r.stats.Load()
	if st == nil {
		return DeployStats{}
	}
	return DeployStats{BytesSent: st.Bytes, BytesRetransmitted: st.RetransmittedBytes, Receivers: int(st.Receivers)}
}

func (r *pluginRun) Params() map[string]string { return nil }
func (r *pluginRun) Stop()                     { r.stopOnce.Do(r.cancel); <-r.done }
func (r *pluginRun) Done() <-chan struct{}     { return r.done }
func (r *pluginRun) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}
