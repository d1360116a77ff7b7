package state

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().UTC().Truncate(time.Millisecond)
	err := s.Update(func(tx *Tx) error {
		for _, n := range []*Node{
			{Name: "pc001", MAC: "52:54:00:00:00:01", Origin: OriginConfig, Labels: map[string]string{"room": "b12"}},
			{Name: "pc002", MAC: "52:54:00:00:00:02", Origin: OriginAPI, FirstSeen: now},
		} {
			if err := tx.PutNode(n); err != nil {
				return err
			}
		}
		return tx.PutSession(&Session{Name: "lab", Origin: OriginConfig, Image: "golden", Members: []string{"pc001", "pc002"},
			Run: 3, State: "running", Key: []byte{1, 2, 3}, Timeouts: Timeouts{Boot: time.Minute},
			Nodes: map[string]*NodeRun{"pc001": {State: "receiving", Bytes: 10, Total: 100, Since: now}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	defer s.Close()
	err = s.View(func(tx *Tx) error {
		n, err := tx.NodeByMAC("52:54:00:00:00:02")
		if err != nil {
			return err
		}
		if n.Name != "pc002" || n.Origin != OriginAPI || !n.FirstSeen.Equal(now) {
			t.Errorf("node by MAC: %+v", n)
		}
		if n, err := tx.Node("pc001"); err != nil || n.Labels["room"] != "b12" {
			t.Errorf("node pc001: %+v, %v", n, err)
		}
		nodes, err := tx.Nodes()
		if err != nil || len(nodes) != 2 {
			t.Errorf("nodes: %d, %v", len(nodes), err)
		}
		ss, err := tx.Session("lab")
		if err != nil {
			return err
		}
		if ss.Run != 3 || ss.State != "running" || string(ss.Key) != "\x01\x02\x03" || ss.Timeouts.Boot != time.Minute ||
			ss.Nodes["pc001"].Bytes != 10 || !ss.Nodes["pc001"].Since.Equal(now) {
			t.Errorf("session: %+v", ss)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNotFound(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	errs := map[string]error{
		"delete session": s.Update(func(tx *Tx) error { return tx.DeleteSession("x") }),
		"delete node":    s.Update(func(tx *Tx) error { return tx.DeleteNode("x") }),
	}
	s.View(func(tx *Tx) error {
		_, errs["node"] = tx.Node("x")
		_, errs["mac"] = tx.NodeByMAC("52:54:00:00:00:09")
		_, errs["session"] = tx.Session("x")
		return nil
	})
	for name, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
}

func TestMACIndex(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutNode(&Node{Name: "a", MAC: "52:54:00:00:00:01"}); err != nil {
			return err
		}
		// Another node cannot take a's MAC.
		if err := tx.PutNode(&Node{Name: "b", MAC: "52:54:00:00:00:01"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("duplicate MAC: %v, want ErrInvalid", err)
		}
		// a changes its MAC: the old one is free again.
		if err := tx.PutNode(&Node{Name: "a", MAC: "52:54:00:00:00:02"}); err != nil {
			return err
		}
		if _, err := tx.NodeByMAC("52:54:00:00:00:01"); !errors.Is(err, ErrNotFound) {
			t.Errorf("old MAC still indexed: %v", err)
		}
		if err := tx.PutNode(&Node{Name: "b", MAC: "52:54:00:00:00:01"}); err != nil {
			t.Errorf("freed MAC: %v", err)
		}
		if err := tx.DeleteNode("a"); err != nil {
			return err
		}
		if _, err := tx.NodeByMAC("52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted node's MAC still indexed: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestHistoryBounded(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	const n = MaxHistory + 25
	err := s.Update(func(tx *Tx) error {
		for i := range n {
			if err := tx.AppendHistory("pc001", &HistoryEntry{Time: time.Unix(int64(i), 0), State: "receiving", Bytes: int64(i)}); err != nil {
				return err
			}
		}
		return tx.AppendHistory("pc002", &HistoryEntry{State: "done"})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *Tx) error {
		all, err := tx.History("pc001", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != MaxHistory || all[0].Bytes != n-MaxHistory || all[len(all)-1].Bytes != n-1 || all[len(all)-1].Seq != n {
			t.Errorf("history: %d entries, first %+v, last %+v", len(all), all[0], all[len(all)-1])
		}
		last, _ := tx.History("pc001", 3)
		if len(last) != 3 || last[0].Bytes != n-3 || last[2].Bytes != n-1 {
			t.Errorf("last 3: %+v", last)
		}
		other, _ := tx.History("pc002", 0)
		none, _ := tx.History("nobody", 0)
		if len(other) != 1 || len(none) != 0 {
			t.Errorf("other nodes: %d and %d entries", len(other), len(none))
		}
		return nil
	})
}

func TestLockedBySecondOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

func TestSchemaMismatch(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(bucketMeta)
		return b.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion+1))
	})
	db.Close()
	if _, err := Open(dir); !errors.Is(err, ErrSchema) {
		t.Fatalf("open: %v, want ErrSchema", err)
	}
}
