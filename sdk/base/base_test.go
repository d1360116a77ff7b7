package base

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type cfg struct {
	SkipPagefile bool     `hcl:"skip_pagefile,optional" help:"leave out pagefile.sys"`
	Level        int      `hcl:"level,optional"`
	Name         string   `hcl:"name"`
	Tags         []string `hcl:"tags,optional"`
	Ratio        float64  `hcl:"ratio,optional"`
	Ignored      string
}

func TestSchemaOf(t *testing.T) {
	s, err := SchemaOf(cfg{Level: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(s.Attributes)
	want := "[{skip_pagefile bool false <nil> leave out pagefile.sys} {level number false 3 } {name string true <nil> } {tags list(string) false <nil> } {ratio number false <nil> }]"
	if got != want {
		t.Errorf("schema\n got %s\nwant %s", got, want)
	}
	if _, err := SchemaOf(3); err == nil {
		t.Error("SchemaOf(int) accepted")
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want string // fmt of the struct, or the error text
	}{
		{"all", Config{"skip_pagefile": true, "level": 7.0, "name": "x", "tags": []any{"a", "b"}, "ratio": 0.5},
			"{true 7 x [a b] 0.5 }"},
		{"go ints", Config{"name": "x", "level": 9}, "{false 9 x [] 0 }"},
		{"missing required", Config{}, "plugin: invalid configuration: name: required setting missing"},
		{"several problems at once", Config{"name": 1.0, "level": 1.5, "tags": []any{"a", 2.0}, "colour": "red"},
			"plugin: invalid configuration: level: want a whole number that fits int, got 1.5; name: want a string, got a number; tags: element 1: want a string, got a number; colour: unknown setting (valid: level, name, ratio, skip_pagefile, tags)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c cfg
			err := tc.in.Decode(&c)
			got := fmt.Sprint(c)
			if err != nil {
				got = err.Error()
				if !errors.Is(err, ErrInvalidConfig) {
					t.Errorf("error %v does not wrap ErrInvalidConfig", err)
				}
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	if err := (Config{"x": 1}).Decode(&struct{}{}); err == nil || !strings.Contains(err.Error(), "takes no settings") {
		t.Errorf("no-settings plugin: %v", err)
	}
}

func TestMark(t *testing.T) {
	inner := errors.New("ext4: group 3: bad bitmap")
	e := Mark(fmt.Errorf("probe: %w", inner), ErrUnsupported)
	if e.Error() != "probe: ext4: group 3: bad bitmap" || !errors.Is(e, ErrUnsupported) || !errors.Is(e, inner) {
		t.Errorf("Mark: %q", e)
	}
	if Mark(nil, ErrUnsupported) != nil {
		t.Error("Mark(nil) not nil")
	}
}

func TestSettings(t *testing.T) {
	var s Settings[cfg]
	schema, err := s.ConfigSchema(context.Background())
	if err != nil || len(schema.Attributes) != 5 || schema.Attributes[0].Name != "skip_pagefile" {
		t.Fatalf("schema %+v, %v", schema, err)
	}
	if err := s.Configure(context.Background(), Config{"name": "a", "level": 6.0}); err != nil {
		t.Fatal(err)
	}
	if got := s.Get(); got.Name != "a" || got.Level != 6 {
		t.Errorf("after Configure: %+v", got)
	}
	// A rejected configuration keeps the settings; a new one replaces
	// them whole, so what it leaves out is back to its zero value.
	if err := s.Configure(context.Background(), Config{"name": "b", "nosuch": true}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown setting: %v", err)
	}
	if got := s.Get(); got.Name != "a" {
		t.Errorf("a rejected configuration changed the settings: %+v", got)
	}
	if err := s.Configure(context.Background(), Config{"name": "c"}); err != nil {
		t.Fatal(err)
	}
	if got := s.Get(); got.Name != "c" || got.Level != 0 {
		t.Errorf("after a second Configure: %+v", got)
	}
}
