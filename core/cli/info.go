package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/diskcast/diskcast/core/image"
	"github.com/diskcast/diskcast/core/progress"
)

var infoCommand = &command{
	name:    "info",
	usage:   "[--json] IMAGE.dci",
	summary: "show an image's header, partitions, chunks and compression",
	run:     runInfo,
}

func runInfo(ctx context.Context, e *env, fs *flag.FlagSet, args []string) error {
	jsonOut := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	img, err := image.Open(pos[0])
	if err != nil {
		return err
	}
	defer img.Close()
	h, ix, t := img.Header, img.Index, img.Trailer
	data, stored, zero := ix.DataBytes(), ix.StoredBytes(), ix.ZeroBytes()
	codecs := map[string]int{}
	for i := range ix.Chunks {
		codecs[ix.Chunks[i].Codec.String()]++
	}
	signer := ""
	if t.Signed() {
		signer = image.KeyFingerprint(t.PublicKey[:])
	}
	if *jsonOut {
		parts := make([]map[string]any, 0, len(h.Source.Partitions))
		for _, p := range h.Source.Partitions {
			parts = append(parts, map[string]any{
				"number": p.Number, "start": p.Start, "size": p.Size, "type": p.Type, "type_name": p.TypeName,
				"guid": p.GUID, "name": p.Name, "attributes": p.Attributes, "fs_type": p.FSType,
				"handler": p.Handler, "used_bytes": p.UsedBytes,
			})
		}
		return writeJSON(e.stdout, map[string]any{
			"file": pos[0], "file_bytes": img.Size(), "format": fmt.Sprintf("%d.%d", h.Major, h.Minor),
			"id": h.ID.String(), "created": h.Created, "creator": h.Creator,
			"codec": h.Codec.String(), "level": h.Level, "chunk_size": h.ChunkSize,
			"source": map[string]any{
				"name": h.Source.Name, "kind": h.Source.Kind.String(), "size": h.Source.Size,
				"sector_size": h.Source.SectorSize, "table": h.Source.Table.Scheme, "disk_guid": h.Source.Table.DiskGUID,
			},
			"partitions": parts, "chunks": len(ix.Chunks), "chunk_codecs": codecs,
			"data_bytes": data, "zero_bytes": zero, "stored_bytes": stored, "zero_extents": len(ix.Zeros),
			"last_used_byte": ix.LastUsedByte(), "signed_by": signer,
		})
	}
	w := e.stdout
	fmt.Fprintf(w, "image      %s (%s, format %d.%d)\n", pos[0], progress.Bytes(img.Size()), h.Major, h.Minor)
	fmt.Fprintf(w, "id         %s\n", h.ID)
	fmt.Fprintf(w, "created    %s by %s\n", h.Created.Format("2006-01-02 15:04:05 MST"), h.Creator)
	fmt.Fprintf(w, "source     %s: %s %s, %d-byte sectors, table %s\n", h.Source.Name, progress.Bytes(h.Source.Size), h.Source.Kind, h.Source.SectorSize, h.Source.Table.Scheme)
	fmt.Fprintf(w, "codec      %s level %d, target chunk %s\n", h.Codec, h.Level, progress.Bytes(int64(h.ChunkSize)))
	fmt.Fprintf(w, "chunks     %d (%v)\n", len(ix.Chunks), codecs)
	fmt.Fprintf(w, "data       %s stored as %s (%.1f%%), %s zero in %d extents\n", progress.Bytes(data), progress.Bytes(stored), 100*float64(stored)/float64(max(data, 1)), progress.Bytes(zero), len(ix.Zeros))
	fmt.Fprintf(w, "image/src  %.1f%%; restore needs a target of at least %d bytes\n", 100*float64(img.Size())/float64(max(h.Source.Size, 1)), ix.LastUsedByte())
	if signer != "" {
		fmt.Fprintf(w, "signed by  %s\n", signer)
	} else {
		fmt.Fprintf(w, "signed by  (unsigned)\n")
	}
	if len(h.Source.Partitions) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "#\tSTART\tSIZE\tTYPE\tNAME\tFS\tHANDLER\tUSED")
		for _, p := range h.Source.Partitions {
			typ := p.TypeName
			if typ == "" {
				typ = p.Type
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Start, progress.Bytes(p.Size), orDash(typ), orDash(p.Name), orDash(p.FSType), orDash(p.Handler), progress.Bytes(p.UsedBytes))
		}
		tw.Flush()
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
