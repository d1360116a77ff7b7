package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/diskcast/diskcast/core/image"
)

var keygenCommand = &command{
	name:    "keygen",
	usage:   "KEYFILE",
	summary: "create an ed25519 key pair for signing images (KEYFILE and KEYFILE.pub)",
	run: func(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
		pos, err := parseArgs(fs, args, 1, 1)
		if err != nil {
			return err
		}
		pub, err := image.GenerateKey(pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote %s (private, keep it secret) and %s.pub (%s)\n", pos[0], pos[0], image.KeyFingerprint(pub))
		return nil
	},
}
