package cli

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/diskcast/diskcast/core/capture"
	"github.com/diskcast/diskcast/core/image"
)

// imageFlags are the flags of every command that writes a .dci image
// (capture, import): how chunks are encoded, signing, output handling.
type imageFlags struct {
	codec, chunkSize, sign *string
	level, workers         *int
	json, force, x86       *bool
}

// addImageFlags defines the flags on fs; defaultLevel and levelHelp differ
// between commands.
func addImageFlags(fs *flag.FlagSet, defaultLevel int, levelHelp string) *imageFlags {
	return &imageFlags{
		codec:     fs.String("codec", "zstd", "chunk codec: zstd, gzip or none"),
		level:     fs.Int("level", defaultLevel, levelHelp),
		chunkSize: fs.String("chunk-size", "1M", "target compressed size of a chunk"),
		x86:       fs.Bool("x86-filter", true, "zstd: pass chunks that hold x86 machine code through a branch filter first (executables compress 2-4% smaller; -x86-filter=false for readers of image format 1.0)"),
		workers:   fs.Int("workers", 0, "compression workers (default: one per core)"),
		sign:      fs.String("sign", "", "sign the image with this private key (from 'diskcast keygen')"),
		json:      fs.Bool("json", false, "progress and summary as JSON lines on stdout"),
		force:     fs.Bool("force", false, "overwrite OUT.dci if it exists"),
	}
}

// options checks the flags and returns the capture options and signing
// key; out is the image to write, refused if it exists without --force.
func (f *imageFlags) options(out string) (capture.Options, ed25519.PrivateKey, error) {
	codec, err := image.ParseCodec(*f.codec)
	if err != nil {
		return capture.Options{}, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	cs, err := parseSize(*f.chunkSize)
	if err != nil {
		return capture.Options{}, nil, err
	}
	if cs < 64<<10 || cs > image.MaxRawChunk/8 {
		return capture.Options{}, nil, fmt.Errorf("%w: --chunk-size %s: want 64K to %dM", errUsage, *f.chunkSize, image.MaxRawChunk/8>>20)
	}
	var key ed25519.PrivateKey
	if *f.sign != "" {
		if key, err = image.ReadPrivateKey(*f.sign); err != nil {
			return capture.Options{}, nil, err
		}
	}
	if _, err := os.Stat(out); err == nil && !*f.force {
		return capture.Options{}, nil, fmt.Errorf("%s exists; use --force to overwrite it", out)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return capture.Options{}, nil, err
	}
	return capture.Options{Codec: codec, Level: *f.level, ChunkSize: int(cs), Workers: *f.workers, NoX86Filter: !*f.x86}, key, nil
}
