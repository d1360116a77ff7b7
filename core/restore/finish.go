package restore

import (
	"context"
	"fmt"
)

// Finish completes a restore whose chunks arrived from elsewhere (a
// transport): it checks that every chunk was written, handles the free
// space as mode says, syncs the target and drops the journal. An
// incomplete target keeps its journal for the next attempt.
func (t *Target) Finish(ctx context.Context, mode FreeMode) error {
	if missing := t.Missing(); len(missing) > 0 {
		if err := t.Checkpoint(); err != nil {
			return fmt.Errorf("%w: %s: %d of %d chunks missing (first: %d); journal: %v", ErrIncomplete, t.Dev.Path, len(missing), len(t.done), missing[0], err)
		}
		return fmt.Errorf("%w: %s: %d of %d chunks missing (first: %d)", ErrIncomplete, t.Dev.Path, len(missing), len(t.done), missing[0])
	}
	if err := t.HandleFree(ctx, mode); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := t.Dev.Sync(); err != nil {
		return fmt.Errorf("restore: sync %s: %w", t.Dev.Path, err)
	}
	t.dropJournal()
	return nil
}
