package orchestrator

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/diskcast/diskcast/core/state"
)

// NodeStatus is a node and where it stands in its latest session.
type NodeStatus struct {
	Name      string            `json:"name"`
	MAC       string            `json:"mac"`
	IP        string            `json:"ip,omitempty"`
	Disk      string            `json:"disk,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Origin    string            `json:"origin"`
	FirstSeen time.Time         `json:"first_seen,omitzero"`
	LastSeen  time.Time         `json:"last_seen,omitzero"`
	LastAddr  string            `json:"last_addr,omitempty"`
	Session   string            `json:"session,omitempty"` // running session, else the latest that included it
	Run       int               `json:"run,omitempty"`
	State     string            `json:"state,omitempty"`
	Reason    string            `json:"reason,omitempty"`
}

// NodeDetail is a node with its history.
type NodeDetail struct {
	NodeStatus
	History []*state.HistoryEntry `json:"history"`
}

func (o *Orchestrator) nodeStatusLocked(n *state.Node) NodeStatus {
	st := NodeStatus{Name: n.Name, MAC: n.MAC, IP: n.IP, Disk: n.Disk, Labels: maps.Clone(n.Labels), Origin: n.Origin,
		FirstSeen: n.FirstSeen, LastSeen: n.LastSeen, LastAddr: n.LastAddr}
	var best *session
	for _, s := range o.sessions {
		if s.rec.Nodes[n.Name] == nil {
			continue
		}
		if s.rec.State == SessionRunning {
			best = s
			break
		}
		if best == nil || s.rec.Started.After(best.rec.Started) {
			best = s
		}
	}
	if best != nil {
		run := best.rec.Nodes[n.Name]
		st.Session, st.Run, st.State, st.Reason = best.rec.Name, best.rec.Run, run.State, run.Reason
	}
	return st
}

// Nodes lists every node, by name.
func (o *Orchestrator) Nodes() []NodeStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := []NodeStatus{}
	for _, name := range slices.Sorted(maps.Keys(o.nodes)) {
		out = append(out, o.nodeStatusLocked(o.nodes[name]))
	}
	return out
}

// Node returns a node with its newest history entries (all when
// history <= 0).
func (o *Orchestrator) Node(name string, history int) (*NodeDetail, error) {
	o.mu.Lock()
	n := o.nodes[name]
	if n == nil {
		o.mu.Unlock()
		return nil, fmt.Errorf("%w: no node %q", ErrNotFound, name)
	}
	d := &NodeDetail{NodeStatus: o.nodeStatusLocked(n)}
	o.mu.Unlock()
	err := o.store.View(func(tx *state.Tx) error {
		var err error
		d.History, err = tx.History(name, history)
		return err
	})
	if d.History == nil {
		d.History = []*state.HistoryEntry{}
	}
	return d, err
}

// NodeRequest creates (enrolls) a node over the API.
type NodeRequest struct {
	Name   string            `json:"name"`
	MAC    string            `json:"mac"`
	IP     string            `json:"ip,omitempty"`
	Disk   string            `json:"disk,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// CreateNode enrolls a node. A discovered node with the same MAC is
// replaced by it (its sightings are kept); any other node holding the
// MAC or the name is a conflict.
func (o *Orchestrator) CreateNode(req *NodeRequest) (*NodeStatus, error) {
	if !nameRE.MatchString(req.Name) {
		return nil, fmt.Errorf("%w: name %q: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, req.Name)
	}
	mac, err := NormalizeMAC(req.MAC)
	if err != nil {
		return nil, err
	}
	if req.IP != "" {
		if _, err := netip.ParseAddr(req.IP); err != nil {
			return nil, fmt.Errorf("%w: ip %q: %v", ErrInvalid, req.IP, err)
		}
	}
	if req.Disk != "" && !strings.HasPrefix(req.Disk, "/") {
		return nil, fmt.Errorf("%w: disk %q must be an absolute device path such as /dev/sda", ErrInvalid, req.Disk)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if old := o.nodes[req.Name]; old != nil {
		return nil, fmt.Errorf("%w: node %q already exists (%s, MAC %s)", ErrConflict, req.Name, old.Origin, old.MAC)
	}
	n := &state.Node{Name: req.Name, MAC: mac, IP: req.IP, Disk: req.Disk, Labels: req.Labels, Origin: state.OriginAPI}
	var replaced *state.Node
	if owner, ok := o.macs[mac]; ok {
		replaced = o.nodes[owner]
		if replaced.Origin != state.OriginDiscovered {
			return nil, fmt.Errorf("%w: MAC %s already belongs to node %q", ErrConflict, mac, owner)
		}
		n.FirstSeen, n.LastSeen, n.LastAddr = replaced.FirstSeen, replaced.LastSeen, replaced.LastAddr
	}
	err = o.store.Update(func(tx *state.Tx) error {
		if replaced != nil {
			if err := tx.DeleteNode(replaced.Name); err != nil {
				return err
			}
		}
		if err := tx.PutNode(n); err != nil {
			return err
		}
		e := &state.HistoryEntry{Time: time.Now(), State: "enrolled"}
		if replaced != nil {
			e.Reason = "was discovered as " + replaced.Name
		}
		return tx.AppendHistory(n.Name, e)
	})
	if err != nil {
		return nil, fmt.Errorf("orchestrator: write state: %w", err)
	}
	if replaced != nil {
		delete(o.nodes, replaced.Name)
	}
	o.nodes[n.Name], o.macs[mac] = n, n.Name
	o.log.Info("node enrolled", "node", n.Name, "mac", mac)
	st := o.nodeStatusLocked(n)
	return &st, nil
}

// DeleteNode removes a node created over the API or discovered. Its
// history stays; configured nodes are removed by editing the configuration.
func (o *Orchestrator) DeleteNode(name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.nodes[name]
	if n == nil {
		return fmt.Errorf("%w: no node %q", ErrNotFound, name)
	}
	if n.Origin == state.OriginConfig {
		return fmt.Errorf("%w: node %q is defined in the configuration; remove its node block instead", ErrConflict, name)
	}
	if s := o.runningSessionOf(name); s != nil {
		return fmt.Errorf("%w: node %q is in running session %q", ErrConflict, name, s.rec.Name)
	}
	if err := o.store.Update(func(tx *state.Tx) error { return tx.DeleteNode(name) }); err != nil {
		return fmt.Errorf("orchestrator: write state: %w", err)
	}
	delete(o.nodes, name)
	delete(o.macs, n.MAC)
	o.log.Info("node deleted", "node", name)
	return nil
}

// Images lists the configured images, with the error of any that cannot
// be used.
func (o *Orchestrator) Images() []ImageInfo {
	out := []ImageInfo{}
	for _, name := range o.images.names() {
		if info, err := o.images.info(name); err == nil {
			out = append(out, info)
		}
	}
	return out
}

// Image describes one configured image.
func (o *Orchestrator) Image(name string) (ImageInfo, error) {
	return o.images.info(name)
}
