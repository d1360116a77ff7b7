package base

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Config holds a plugin's settings as JSON values: string, bool, float64
// (numbers), []any (lists) keyed by attribute name. The core builds it from
// the plugin's HCL block or from command-line flags.
type Config map[string]any

// Attribute types.
const (
	TypeString     = "string"
	TypeBool       = "bool"
	TypeNumber     = "number"
	TypeStringList = "list(string)"
)

// Attribute is one setting a plugin accepts.
type Attribute struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // one of the Type constants
	Required    bool   `json:"required,omitempty"`
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// Schema lists the settings a plugin accepts.
type Schema struct {
	Attributes []Attribute `json:"attributes"`
}

// SchemaOf derives a schema from a config struct, so that the struct is
// the single source of truth: each field with an `hcl:"name"` or
// `hcl:"name,optional"` tag is an attribute, its `help:"..."` tag the
// description, and its value in v (if not zero) the default. Field types
// may be string, bool, any integer or float type, or []string.
func SchemaOf(v any) (*Schema, error) {
	rv := reflect.Indirect(reflect.ValueOf(v))
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("base: SchemaOf(%T): want a struct", v)
	}
	s := &Schema{}
	for _, f := range fields(rv.Type()) {
		a := Attribute{Name: f.name, Type: f.typ, Required: f.required, Description: f.help}
		if fv := rv.Field(f.index); !fv.IsZero() {
			a.Default = fv.Interface()
		}
		s.Attributes = append(s.Attributes, a)
	}
	return s, nil
}

// Decode stores cfg into the config struct that v points to, using the
// same tags as SchemaOf. Settings missing from cfg keep their value in v.
// Every problem is reported at once, in an error wrapping
// ErrInvalidConfig: unknown names (with the valid ones), wrong types and
// missing required settings.
func (cfg Config) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("base: Decode(%T): want a pointer to a struct", v)
	}
	rv = rv.Elem()
	fs := fields(rv.Type())
	var problems []string
	known := map[string]bool{}
	for _, f := range fs {
		known[f.name] = true
		raw, ok := cfg[f.name]
		if !ok {
			if f.required {
				problems = append(problems, fmt.Sprintf("%s: required setting missing", f.name))
			}
			continue
		}
		if err := set(rv.Field(f.index), raw); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", f.name, err))
		}
	}
	var unknown []string
	for k := range cfg {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		valid := slices.Sorted(func(yield func(string) bool) {
			for n := range known {
				if !yield(n) {
					return
				}
			}
		})
		if len(valid) == 0 {
			problems = append(problems, fmt.Sprintf("%s: unknown setting (this plugin takes no settings)", k))
		} else {
			problems = append(problems, fmt.Sprintf("%s: unknown setting (valid: %s)", k, strings.Join(valid, ", ")))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(problems, "; "))
	}
	return nil
}

// NoConfig implements ConfigSchema and Configure for a plugin without
// settings: embed it. Configure rejects any setting.
type NoConfig struct{}

// ConfigSchema returns an empty schema.
func (NoConfig) ConfigSchema(context.Context) (*Schema, error) { return &Schema{}, nil }

// Configure rejects every setting.
func (NoConfig) Configure(_ context.Context, cfg Config) error {
	return cfg.Decode(&struct{}{})
}

// Settings keeps a plugin's settings of type T, a struct whose hcl and
// help tags are the single source of its config schema: embed it for
// ConfigSchema and Configure, and read the settings with Get. Configure
// replaces them; settings left out take T's zero values.
type Settings[T any] struct {
	mu  sync.Mutex
	cur T
}

// ConfigSchema is derived from T.
func (*Settings[T]) ConfigSchema(context.Context) (*Schema, error) {
	var zero T
	return SchemaOf(zero)
}

// Configure replaces the settings.
func (s *Settings[T]) Configure(_ context.Context, cfg Config) error {
	var c T
	if err := cfg.Decode(&c); err != nil {
		return err
	}
	s.mu.Lock()
	s.cur = c
	s.mu.Unlock()
	return nil
}

// Get returns the settings; safe from any goroutine.
func (s *Settings[T]) Get() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

type field struct {
	index     int
	name, typ string
	required  bool
	help      string
}

func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("hcl")
		if !ok || !sf.IsExported() {
			continue
		}
		name, opt, _ := strings.Cut(tag, ",")
		typ := typeName(sf.Type)
		if name == "" || typ == "" {
			continue
		}
		out = append(out, field{index: i, name: name, typ: typ, required: opt != "optional", help: sf.Tag.Get("help")})
	}
	return out
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return TypeString
	case reflect.Bool:
		return TypeBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return TypeNumber
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return TypeStringList
		}
	}
	return ""
}

// set converts a JSON value into the field.
func set(f reflect.Value, raw any) error {
	// Values that came through JSON are float64; values set in Go may be
	// any number type: normalise through JSON.
	if _, ok := raw.(json.Number); !ok {
		if b, err := json.Marshal(raw); err == nil {
			var norm any
			if json.Unmarshal(b, &norm) == nil {
				raw = norm
			}
		}
	}
	switch f.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s", jsonType(raw))
		}
		f.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("want true or false, got %s", jsonType(raw))
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(float64)
		if !ok || n != math.Trunc(n) || f.OverflowInt(int64(n)) {
			return fmt.Errorf("want a whole number that fits %s, got %v", f.Type(), raw)
		}
		f.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := raw.(float64)
		if !ok || n < 0 || n != math.Trunc(n) || f.OverflowUint(uint64(n)) {
			return fmt.Errorf("want a whole number that fits %s, got %v", f.Type(), raw)
		}
		f.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		n, ok := raw.(float64)
		if !ok {
			return fmt.Errorf("want a number, got %s", jsonType(raw))
		}
		f.SetFloat(n)
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("want a list of strings, got %s", jsonType(raw))
		}
		out := reflect.MakeSlice(f.Type(), 0, len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("element %d: want a string, got %s", i, jsonType(e))
			}
			out = reflect.Append(out, reflect.ValueOf(s))
		}
		f.Set(out)
	}
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a bool"
	case float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
