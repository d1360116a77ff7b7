package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

// AnalyzeOptions chooses how capture uses the filesystem plugins.
type AnalyzeOptions struct {
	// Only, if set, names the one filesystem plugin to use; partitions
	// it does not recognise are captured raw.
	Only string
	// Config holds settings per plugin name, applied before the first
	// probe. Naming a plugin that is not used is an error.
	Config map[string]base.Config
	// Warn receives warnings for the operator (nil: dropped).
	Warn func(msg string)
}

// Analyzer starts and configures the filesystem plugins and returns the
// capture pipeline's Analyzer for the device or image file at source. It
// fails if a plugin cannot be started or configured, so a capture does
// not begin with a plugin missing.
func (m *Manager) Analyzer(ctx context.Context, source string, opts AnalyzeOptions) (capture.Analyzer, error) {
	names := m.Names(ctx, base.KindFilesystem)
	if opts.Only != "" {
		if !slices.Contains(names, opts.Only) {
			m.mu.Lock()
			_, err := m.find(ctx, base.KindFilesystem, opts.Only)
			m.mu.Unlock()
			return nil, err
		}
		names = []string{opts.Only}
	}
	for name := range opts.Config {
		if !slices.Contains(names, name) {
			return nil, fmt.Errorf("%w: settings for filesystem plugin %q, which is not in use (in use: %s)",
				ErrNotFound, name, strings.Join(names, ", "))
		}
	}
	clients := make([]filesystem.Client, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.Filesystem(ctx, name)
			if err == nil {
				err = c.Configure(ctx, opts.Config[name])
			}
			clients[i], errs[i] = c, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &analyzer{source: source, names: names, clients: clients, warn: opts.Warn}
	return a.analyze, nil
}

type analyzer struct {
	source  string
	names   []string
	clients []filesystem.Client
	warn    func(string)
}

// analyze asks every plugin about the partition and keeps the most
// confident answer. It reads nothing itself: each plugin opens the
// source at the partition's offset.
func (a *analyzer) analyze(ctx context.Context, _ io.ReaderAt, off, size int64) (*capture.Analysis, error) {
	v := filesystem.Volume{Path: a.source, Offset: off, Size: size}
	best, bestConf := -1, 0
	var bestResult *filesystem.ProbeResult
	var claims []string
	var errs []error
	for i, c := range a.clients {
		r, err := c.Probe(ctx, v)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		if r.Confidence <= 0 {
			continue
		}
		claims = append(claims, fmt.Sprintf("%s (%s, confidence %d)", a.names[i], r.FSType, r.Confidence))
		if r.Confidence > bestConf {
			best, bestConf, bestResult = i, r.Confidence, r
		}
	}
	if best < 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, nil
	}
	if len(claims) > 1 {
		a.warnf("filesystem plugins disagree about the partition at byte %d: %s; using %s", off, strings.Join(claims, ", "), a.names[best])
	}
	for _, err := range errs {
		a.warnf("partition at byte %d: %v (using %s)", off, err, a.names[best])
	}
	c, name, r := a.clients[best], a.names[best], bestResult
	if r.Unsupported != "" {
		return nil, fmt.Errorf("%s filesystem, but plugin %s cannot tell its used blocks: %s", r.FSType, name, r.Unsupported)
	}
	return &capture.Analysis{
		FSType:  r.FSType,
		Handler: name,
		Extents: func(ctx context.Context, emit func(off, length int64) error) error {
			return c.UsedExtents(ctx, v, emit)
		},
	}, nil
}

func (a *analyzer) warnf(format string, args ...any) {
	if a.warn != nil {
		a.warn(fmt.Sprintf(format, args...))
	}
}

// FixUp runs the post-restore fix-up of the filesystem plugin that
// captured a partition (its handler in the image header) on the restored
// volume. It does nothing for raw partitions, for plugins without the
// capability, or when the plugin is not installed here (then it returns
// a warning for the operator instead of an error: the restored bytes are
// already exact).
func (m *Manager) FixUp(ctx context.Context, handler string, v filesystem.Volume) (warning string, err error) {
	if handler == "" || handler == "raw" {
		return "", nil
	}
	c, err := m.Filesystem(ctx, handler)
	if errors.Is(err, ErrNotFound) {
		return fmt.Sprintf("filesystem plugin %s is not installed: its post-restore fix-up did not run", handler), nil
	}
	if err != nil {
		return "", err
	}
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return "", err
	}
	if !caps.FixUp {
		return "", nil
	}
	return "", c.FixUp(ctx, v)
}
