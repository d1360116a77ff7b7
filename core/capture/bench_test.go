package capture_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/internal/testenv"
	"github.com/diskcast/diskcast/core/restore"
)

// benchSource returns the source to capture: $DISKCAST_BENCH_SOURCE, or a
// 256 MiB ext4 filesystem filled with mixed files.
func benchSource(b *testing.B) string {
	if s := os.Getenv("DISKCAST_BENCH_SOURCE"); s != "" {
		return s
	}
	dir := b.TempDir()
	testenv.FillTree(b, filepath.Join(dir, "tree"), 600, 4)
	src := filepath.Join(dir, "fs.img")
	testenv.MkfsExt4(b, src, 256<<20, filepath.Join(dir, "tree"))
	return src
}

func BenchmarkCapture(b *testing.B) {
	src := benchSource(b)
	st, err := os.Stat(src)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.dci")
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := capture.Run(context.Background(), capture.Request{Source: src, Output: out, Options: capture.Options{Codec: image.CodecZstd}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	src := benchSource(b)
	dir := b.TempDir()
	out := filepath.Join(dir, "out.dci")
	if _, err := capture.Run(context.Background(), capture.Request{Source: src, Output: out, Options: capture.Options{Codec: image.CodecZstd}}); err != nil {
		b.Fatal(err)
	}
	img, err := image.Open(out)
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	b.SetBytes(img.Index.DataBytes())
	target := filepath.Join(dir, "target.img")
	for b.Loop() {
		os.Remove(target)
		if _, err := restore.Run(context.Background(), img.Reader, target, restore.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
