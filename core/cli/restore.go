package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/plugin"
	"github.com/diskcast/diskcast/core/progress"
	"github.com/diskcast/diskcast/core/restore"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/diskcast/diskcast/sdk/filesystem"
)

var restoreCommand = &command{
	name:    "restore",
	usage:   "[flags] IMAGE.dci TARGET",
	summary: "write an image onto a block device or file, verifying every chunk before it is written",
	run:     runRestore,
}

func runRestore(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	free := fs.String("free", "keep", "free space of the target: keep (leave as is), zero or discard")
	pubkey := fs.String("pubkey", "", "require a valid signature by this public key")
	workers := fs.Int("workers", 0, "decompression workers (default: one per core)")
	jsonOut := fs.Bool("json", false, "progress and summary as JSON lines on stdout")
	noResume := fs.Bool("no-resume", false, "start over instead of resuming an interrupted restore of the same image")
	fx := addFixUpFlags(fs)
	dirs := pluginDirFlag(fs)
	pos, err := parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	// Clonezilla directories, partclone/ntfsclone and compressed raw images.
	if handled, err := restoreForeign(ctx, e, pos[0], pos[1], foreignOptions{json: *jsonOut, pubkey: *pubkey, free: *free}); handled {
		return err
	}
	if err := fx.check(); err != nil {
		return err
	}
	journal := restore.DefaultJournal(pos[1])
	if *noResume {
		os.Remove(journal)
	}
	mode, err := restore.ParseFreeMode(*free)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	img, err := openImage(pos[0], *pubkey)
	if err != nil {
		return err
	}
	defer img.Close()
	pmode := progress.ModeFor(e.stderrFile, *jsonOut)
	out := e.stderr
	if pmode == progress.JSON {
		out = e.stdout
	}
	m := e.newManager(dirs)
	defer m.Close()
	fixUp := fx.fixUp(e, m, img.Header)
	var meter *progress.Meter
	res, err := restore.Run(ctx, img.Reader, pos[1], restore.Options{
		FixUp:   fixUp,
		Workers: *workers,
		Free:    mode,
		Journal: journal,
		Started: func(t *restore.Target) {
			meter = progress.Start(out, pmode, "restore", func() progress.Sample {
				return progress.Sample{
					Done:  t.Stats.DataBytes.Load() + t.Stats.ZeroBytes.Load(),
					Total: t.Total(),
					Extra: map[string]int64{"chunks": t.Stats.Chunks.Load()},
				}
			})
		},
	})
	if meter != nil {
		meter.Stop()
	}
	if err != nil {
		return err
	}
	secs := res.Elapsed.Seconds()
	if *jsonOut {
		return writeJSON(e.stdout, map[string]any{
			"event": "restored", "image": pos[0], "target": pos[1], "id": img.Header.ID.String(),
			"chunks": res.Chunks, "resumed_chunks": res.Resumed, "data_bytes": res.DataBytes, "zero_bytes": res.ZeroBytes, "seconds": secs,
		})
	}
	if res.Resumed > 0 {
		fmt.Fprintf(e.stdout, "resumed an interrupted restore: %d chunks were already on the target\n", res.Resumed)
	}
	fmt.Fprintf(e.stdout, "restored %s onto %s: %d chunks verified, %s written, %s zeroed, %.2f s (%s)\n",
		pos[0], pos[1], res.Chunks, progress.Bytes(res.DataBytes), progress.Bytes(res.ZeroBytes), secs, rate(res.DataBytes, secs))
	return nil
}

// openImage opens an image and, when pubkeyPath is set, requires a valid
// signature by that key; a signed image is always checked against its own
// key.
func openImage(path, pubkeyPath string) (*image.File, error) {
	img, err := image.Open(path)
	if err != nil {
		return nil, err
	}
	var pub ed25519.PublicKey
	if pubkeyPath != "" {
		if pub, err = image.ReadPublicKey(pubkeyPath); err != nil {
			img.Close()
			return nil, err
		}
	}
	if err := img.Verify(pub); err != nil {
		img.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// fixUpFlags are the flags of the commands that restore: --no-fixup and
// --new-serial.
type fixUpFlags struct{ no, newSerial *bool }

func addFixUpFlags(fs *flag.FlagSet) *fixUpFlags {
	return &fixUpFlags{
		no:        fs.Bool("no-fixup", false, "do not run the filesystem plugins' post-restore fix-ups"),
		newSerial: fs.Bool("new-serial", false, "give restored NTFS and FAT filesystems new serial numbers (the plugins' new_serial fix-up), so clones differ; fstab entries naming them by UUID= then no longer match. Without it the restore is byte-exact"),
	}
}

func (f *fixUpFlags) check() error {
	if *f.no && *f.newSerial {
		return fmt.Errorf("%w: --new-serial is a fix-up: drop --no-fixup", errUsage)
	}
	return nil
}

// fixUp returns the fix-up of an image's restore (nil: none to run).
func (f *fixUpFlags) fixUp(e *env, m *plugin.Manager, h *image.Header) restore.FixUpFunc {
	if *f.no || !needsFixUp(h) {
		return nil
	}
	u := &fixUpper{m: m, newSerial: *f.newSerial, warn: func(msg string) { fmt.Fprintf(e.stderr, "warning: %s\n", msg) }}
	return u.run
}

// needsFixUp reports whether a filesystem plugin captured any partition
// of the image, so that a restore may have fix-ups to run.
func needsFixUp(h *image.Header) bool {
	return slices.ContainsFunc(h.Source.Partitions, image.Partition.ByPlugin)
}

// fixUpper runs the post-restore fix-up of the plugin that captured each
// partition, configuring each plugin once before its first fix-up.
type fixUpper struct {
	m         *plugin.Manager
	newSerial bool
	warn      func(string)
	ready     map[string]bool // plugins configured (or found missing)
}

func (f *fixUpper) run(ctx context.Context, p image.Partition, v restore.Volume) error {
	if err := f.configure(ctx, p.Handler); err != nil {
		return err
	}
	warning, err := f.m.FixUp(ctx, p.Handler, filesystem.Volume{Path: v.Path, Offset: v.Offset, Size: v.Size})
	if warning != "" {
		f.warn(fmt.Sprintf("partition %d: %s", p.Number, warning))
	}
	return err
}

// configure applies --new-serial to a plugin that has the setting, and
// warns once about one that does not (its filesystem keeps its identity).
func (f *fixUpper) configure(ctx context.Context, name string) error {
	if f.ready[name] {
		return nil
	}
	if f.ready == nil {
		f.ready = map[string]bool{}
	}
	f.ready[name] = true
	if !f.newSerial {
		return nil
	}
	c, err := f.m.Filesystem(ctx, name)
	if errors.Is(err, plugin.ErrNotFound) {
		return nil // FixUp says so
	}
	if err != nil {
		return err
	}
	schema, err := c.ConfigSchema(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(schema.Attributes, func(a base.Attribute) bool { return a.Name == newSerialSetting }) {
		f.warn(fmt.Sprintf("--new-serial: filesystem plugin %s has no %s setting: its filesystems keep their identifiers", name, newSerialSetting))
		return nil
	}
	return c.Configure(ctx, base.Config{newSerialSetting: true})
}

// newSerialSetting is the plugin setting --new-serial turns on.
const newSerialSetting = "new_serial"
