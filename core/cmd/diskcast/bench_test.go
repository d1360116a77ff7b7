package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/plugin"
)

// benchImage returns the ext4 image to capture: $DISKCAST_BENCH_EXT4 if
// set (for example one made by scripts/bench/mkdata-ext4.sh), else a
// small one made here so that CI's -benchtime=1x run stays quick.
func benchImage(b *testing.B) string {
	if p := os.Getenv("DISKCAST_BENCH_EXT4"); p != "" {
		return p
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		b.Skip("mkfs.ext4 is not installed (apt-get install e2fsprogs)")
	}
	dir := b.TempDir()
	files := filepath.Join(dir, "files")
	os.MkdirAll(files, 0o755)
	for i := range 24 {
		data := make([]byte, 1<<20)
		for j := range data {
			data[j] = byte(j*i + j>>9)
		}
		os.WriteFile(filepath.Join(files, strconv.Itoa(i)), data, 0o644)
	}
	img := filepath.Join(dir, "ext4.img")
	for _, c := range [][]string{{"truncate", "-s", "96M", img}, {"mkfs.ext4", "-q", "-F", "-d", files, img}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	return img
}

// captureOnce captures img with the ext4 plugin run in or out of process
// and returns the capture's wall time.
func captureOnce(b *testing.B, img string, inProcess bool) time.Duration {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	m := &plugin.Manager{Builtins: builtins(), Executable: exe, Dirs: []string{}, InProcess: inProcess}
	defer m.Close()
	ctx := context.Background()
	start := time.Now()
	a, err := m.Analyzer(ctx, img, plugin.AnalyzeOptions{Only: "ext4"})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.dci")
	res, err := capture.Run(ctx, capture.Request{
		Source: img, Output: out, Analyze: a,
		Options: capture.Options{Codec: image.CodecZstd, Level: image.DefaultLevel},
	})
	if err != nil {
		b.Fatal(err)
	}
	d := time.Since(start) // includes starting the plugin
	if h := res.Header.Source.Partitions[0].Handler; h != "ext4" {
		b.Fatalf("captured by %q, want ext4", h)
	}
	b.SetBytes(res.Stats.DataBytes)
	os.Remove(out)
	return d
}

// BenchmarkCaptureExt4Plugin captures the same ext4 image with the ext4
// plugin called in process and run out of process.
func BenchmarkCaptureExt4Plugin(b *testing.B) {
	img := benchImage(b)
	for _, in := range []bool{true, false} {
		name := map[bool]string{true: "in-process", false: "out-of-process"}[in]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				captureOnce(b, img, in)
			}
		})
	}
}

// BenchmarkPluginOverhead alternates in-process and out-of-process
// captures of the same image (after one warm-up of each) and reports the
// medians and the cost of the process boundary in percent of the capture
// time. Each b.N iteration is one pair.
func BenchmarkPluginOverhead(b *testing.B) {
	img := benchImage(b)
	captureOnce(b, img, true)
	captureOnce(b, img, false)
	var in, out []time.Duration
	for b.Loop() {
		in = append(in, captureOnce(b, img, true))
		out = append(out, captureOnce(b, img, false))
	}
	median := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	mi, mo := median(in), median(out)
	b.ReportMetric(mi.Seconds(), "s-in-process")
	b.ReportMetric(mo.Seconds(), "s-out-of-process")
	b.ReportMetric(100*(mo.Seconds()-mi.Seconds())/mi.Seconds(), "%overhead")
	// On a loaded machine the fastest run of each is the least disturbed.
	fi, fo := slices.Min(in), slices.Min(out)
	b.ReportMetric(100*(fo.Seconds()-fi.Seconds())/fi.Seconds(), "%overhead-of-fastest")
	if testing.Verbose() {
		fmt.Printf("pairs %d: in-process %v, out-of-process %v (each run: in %v, out %v)\n", len(in), mi, mo, in, out)
	}
}

// BenchmarkPluginCalls measures only what the process boundary touches:
// starting the ext4 plugin, probing the image and streaming its extents
// (discarded), in process and out of process. The difference is the
// absolute cost of running the plugin out of process, which
// BenchmarkPluginOverhead relates to a whole capture.
func BenchmarkPluginCalls(b *testing.B) {
	img := benchImage(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(img)
	if err != nil {
		b.Fatal(err)
	}
	for _, in := range []bool{true, false} {
		name := map[bool]string{true: "in-process", false: "out-of-process"}[in]
		b.Run(name, func(b *testing.B) {
			extents := 0
			for b.Loop() {
				m := &plugin.Manager{Builtins: builtins(), Executable: exe, Dirs: []string{}, InProcess: in}
				a, err := m.Analyzer(context.Background(), img, plugin.AnalyzeOptions{Only: "ext4"})
				if err != nil {
					b.Fatal(err)
				}
				res, err := a(context.Background(), nil, 0, st.Size())
				if err != nil || res == nil {
					b.Fatalf("analysis %v, %v", res, err)
				}
				extents = 0
				if err := res.Extents(context.Background(), func(off, length int64) error { extents++; return nil }); err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
			b.ReportMetric(float64(extents), "extents")
		})
	}
}
