package config

import (
	"fmt"
	"math/big"

	"github.com/diskcast/diskcast/sdk/base"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// DecodePlugin decodes a plugin block's body with the schema the plugin
// reports. Unknown settings, wrong types and missing required settings
// are diagnostics at the attribute (or the block) with file:line.
func DecodePlugin(p *Plugin, schema *base.Schema) (base.Config, hcl.Diagnostics) {
	spec := hcldec.ObjectSpec{}
	for _, a := range schema.Attributes {
		t, ok := ctyType(a.Type)
		if !ok {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError, Subject: p.DefRange.Ptr(),
				Summary: fmt.Sprintf("plugin %s %q reports setting %q of unknown type %q", p.Kind, p.Name, a.Name, a.Type),
				Detail:  "The plugin was built against another diskcast SDK; update it.",
			}}
		}
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: t, Required: a.Required}
	}
	val, diags := hcldec.Decode(p.Body, spec, p.EvalCtx)
	if diags.HasErrors() {
		return nil, diags
	}
	cfg := base.Config{}
	for name := range spec {
		v := val.GetAttr(name)
		if v.IsNull() {
			continue
		}
		cfg[name] = goValue(v)
	}
	return cfg, diags
}

func ctyType(t string) (cty.Type, bool) {
	switch t {
	case base.TypeString:
		return cty.String, true
	case base.TypeBool:
		return cty.Bool, true
	case base.TypeNumber:
		return cty.Number, true
	case base.TypeStringList:
		return cty.List(cty.String), true
	}
	return cty.NilType, false
}

// goValue converts a value of one of ctyType's types; whole numbers
// become int64, others float64.
func goValue(v cty.Value) any {
	switch {
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Bool:
		return v.True()
	case v.Type() == cty.Number:
		bf := v.AsBigFloat()
		if i, acc := bf.Int64(); acc == big.Exact {
			return i
		}
		f, _ := bf.Float64()
		return f
	default:
		var out []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if !e.IsNull() {
				out = append(out, e.AsString())
			}
		}
		return out
	}
}
