package cli

import (
	"errors"
	"flag"
	"testing"
)

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"adaptive", 0, false}, {"0", 0, false}, {"600M", 75_000_000, false}, {"600Mbit", 75_000_000, false},
		{"600m", 75_000_000, false}, {"1G", 125_000_000, false}, {"8000", 1000, false},
		{"fast", 0, true}, {"-5M", 0, true}, {"5X", 0, true},
	} {
		got, err := parseRate(c.in)
		if c.bad != (err != nil) || got != c.want {
			t.Errorf("parseRate(%q) = %d, %v", c.in, got, err)
		}
	}
}

func TestCastSession(t *testing.T) {
	parse := func(args ...string) (*castFlags, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c := addCastFlags(fs)
		return c, fs.Parse(args)
	}
	c, _ := parse("--session-key", "00112233445566778899aabbccddeeff")
	s, key, err := c.session("x", false)
	if err != nil || len(key) != 16 || s.Params["group"] != DefaultGroup || s.Params["session_id"] == "" {
		t.Fatalf("session %+v, %v", s, err)
	}
	// Sender and receivers derive the same session ID from the key.
	c2, _ := parse("--session-key", "00112233445566778899aabbccddeeff", "--group", "239.1.1.1:5000")
	s2, _, _ := c2.session("y", true)
	if s2.Params["session_id"] != s.Params["session_id"] || s2.Params["group"] != "239.1.1.1:5000" {
		t.Errorf("sessions %v and %v", s.Params, s2.Params)
	}
	for _, args := range [][]string{
		{"--group", "10.0.0.1:5000", "--session-key", "00112233445566778899aabbccddeeff"},
		{"--group", "239.1.1.1", "--session-key", "00112233445566778899aabbccddeeff"},
		{"--session-key", "0011"},
		{},
	} {
		c, _ := parse(args...)
		if _, _, err := c.session("x", false); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v", args, err)
		}
	}
	c, _ = parse()
	if _, key, err := c.session("x", true); err != nil || len(key) != 32 {
		t.Errorf("a sender without a key: %d bytes, %v", len(key), err)
	}
}
