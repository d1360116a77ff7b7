package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
)

var imagesCommand = &command{
	name:    "images",
	usage:   "[--json] [--server URL]",
	summary: "list the daemon's images: ID, size, chunks, signature, and any problem with the file",
	run:     runImages,
}

func runImages(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	jsonOut := fs.Bool("json", false, "print JSON")
	co := addClientFlags(fs)
	if _, err := parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	c, err := co.client()
	if err != nil {
		return err
	}
	imgs, err := c.Images(ctx)
	if err != nil {
		return err
	}
	if *jsonOut {
		return writeJSON(e.stdout, imgs)
	}
	if len(imgs) == 0 {
		fmt.Fprintln(e.stdout, "no images configured")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSOURCE\tDATA\tSTORED\tCHUNKS\tSIGNED\tPATH")
	for _, im := range imgs {
		if im.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\n", im.Name, im.Path)
			continue
		}
		signed := "no"
		if im.Signed {
			signed = im.SignedBy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%d\t%s\t%s\n", im.Name, im.ID[:12], im.SourceKind, apiBytes(im.SourceSize),
			apiBytes(im.DataBytes), apiBytes(im.StoredBytes), im.Chunks, signed, im.Path)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, im := range imgs {
		if im.Error != "" {
			fmt.Fprintf(e.stdout, "image %s: unusable: %s\n", im.Name, im.Error)
		}
	}
	return nil
}
