package cli

import (
	"context"
	"flag"
	"fmt"
	"runtime"

	"github.com/diskcast/diskcast/core/image"
)

var versionCommand = &command{
	name:    "version",
	summary: "print the diskcast version and the image format version",
	run: func(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
		if _, err := parseArgs(fs, args, 0, 0); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "diskcast %s (%s, %s/%s), image format %d.%d\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, image.MajorVersion, image.MinorVersion)
		return nil
	},
}
