// Command testplugin is a third-party filesystem plugin binary for the
// tests of core/plugin. Its filesystems recognise files that start with
// "TESTFS" and report every 4 KiB block that is not all zeros; each
// misbehaves in its own way:
//
//	good   follows the contract
//	crash  panics after 5000 extents
//	hang   stops answering after 10 extents
//
// With TESTPLUGIN_API=N in its environment it speaks plugin API version N
// in its handshake (and in describe, unless TESTPLUGIN_DESCRIBE_API says
// otherwise), like a plugin built against another SDK.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
	"github.com/diskcast/diskcast/sdk/plugin"
	goplugin "github.com/hashicorp/go-plugin"
)

type testfs struct {
	base.NoConfig
	filesystem.NoFixUp
	mode string
}

func (t *testfs) Info(context.Context) (*base.Info, error) {
	return &base.Info{Description: "test filesystem (" + t.mode + ")"}, nil
}

func (t *testfs) Capabilities(context.Context) (*filesystem.Capabilities, error) {
	return &filesystem.Capabilities{}, nil
}

func (t *testfs) Probe(_ context.Context, r io.ReaderAt, size int64) (*filesystem.ProbeResult, error) {
	magic := make([]byte, 6)
	if _, err := r.ReadAt(magic, 0); err != nil || string(magic) != "TESTFS" {
		return &filesystem.ProbeResult{}, nil
	}
	return &filesystem.ProbeResult{Confidence: filesystem.HighConfidence, FSType: "testfs", BlockSize: 4096, Blocks: uint64(size / 4096)}, nil
}

func (t *testfs) UsedExtents(ctx context.Context, r io.ReaderAt, size int64, emit func(off, length int64) error) error {
	buf := make([]byte, 4096)
	zero := make([]byte, 4096)
	n := 0
	for off := int64(0); off+4096 <= size; off += 4096 {
		if _, err := r.ReadAt(buf, off); err != nil {
			return err
		}
		if bytes.Equal(buf, zero) {
			continue
		}
		if err := emit(off, 4096); err != nil {
			return err
		}
		n++
		switch {
		case t.mode == "crash" && n == 5000:
			time.Sleep(500 * time.Millisecond) // let the batches so far go out
			panic("testplugin: simulated crash after 5000 extents")
		case t.mode == "hang" && n == 10:
			select {} // never returns, ignores ctx: a stuck plugin
		}
	}
	return nil
}

func main() {
	set := plugin.NewSet()
	for _, mode := range []string{"good", "crash", "hang"} {
		set.RegisterFilesystem(mode, &testfs{mode: mode})
	}
	set.SetVersion("0.0.1")
	api, _ := strconv.Atoi(os.Getenv("TESTPLUGIN_API"))
	if api == 0 || api == base.APIVersion {
		if err := set.Run(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	// Another API version: what a plugin built against another SDK does.
	if len(os.Args) == 2 && os.Args[1] == "describe" {
		d := set.Describe()
		d.APIVersion = api
		if v, err := strconv.Atoi(os.Getenv("TESTPLUGIN_DESCRIBE_API")); err == nil {
			d.APIVersion = v
		}
		json.NewEncoder(os.Stdout).Encode(d)
		return
	}
	hs := base.Handshake
	hs.ProtocolVersion = uint(api)
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins: goplugin.PluginSet{
			"filesystem": &filesystem.GRPCPlugin{Impl: &testfs{mode: "good"}, Meta: base.Info{Name: "good"}},
		},
		GRPCServer: goplugin.DefaultGRPCServer,
	})
}
