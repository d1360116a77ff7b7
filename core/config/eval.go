package config

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// EnvPrefix is the prefix of environment variables that set HCL variables.
const EnvPrefix = "DISKCAST_VAR_"

// functions available in expressions.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"upper": stdlib.UpperFunc, "lower": stdlib.LowerFunc, "title": stdlib.TitleFunc,
		"trimspace": stdlib.TrimSpaceFunc, "replace": stdlib.ReplaceFunc, "regex_replace": stdlib.RegexReplaceFunc,
		"format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc, "join": stdlib.JoinFunc,
		"split": stdlib.SplitFunc, "concat": stdlib.ConcatFunc, "length": stdlib.LengthFunc,
		"range": stdlib.RangeFunc, "merge": stdlib.MergeFunc, "keys": stdlib.KeysFunc,
		"values": stdlib.ValuesFunc, "lookup": stdlib.LookupFunc, "contains": stdlib.ContainsFunc,
		"distinct": stdlib.DistinctFunc, "flatten": stdlib.FlattenFunc, "min": stdlib.MinFunc,
		"max": stdlib.MaxFunc, "tostring": stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
		"try": tryfunc.TryFunc, "can": tryfunc.CanFunc,
	}
}

// evalContext evaluates variables (defaults, overridden from the
// environment) and then locals, which may refer to variables and to each
// other, and returns the context for the rest of the configuration.
func evalContext(blocks hcl.Blocks, getenv func(string) string) (*hcl.EvalContext, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vars := map[string]cty.Value{}
	base := &hcl.EvalContext{Functions: functions()}
	seen := map[string]hcl.Range{}
	for _, b := range blocks.OfType("variable") {
		name := b.Labels[0]
		if first, dup := seen[name]; dup {
			diags = append(diags, errAt(b.DefRange.Ptr(), "Duplicate variable", fmt.Sprintf("Variable %q is also declared at %s.", name, first)))
			continue
		}
		seen[name] = b.DefRange
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for an, a := range attrs {
			if an != "default" && an != "description" {
				diags = append(diags, errAt(a.NameRange.Ptr(), "Unsupported argument", fmt.Sprintf("A variable block takes default and description, not %q.", an)))
			}
		}
		if env := getenv(EnvPrefix + name); env != "" {
			vars[name] = cty.StringVal(env)
			continue
		}
		def, ok := attrs["default"]
		if !ok {
			diags = append(diags, errAt(b.DefRange.Ptr(), "Variable without a value",
				fmt.Sprintf("Variable %q has no default; give it one, or set %s%s in the environment.", name, EnvPrefix, name)))
			continue
		}
		v, d := def.Expr.Value(base) // defaults are constants (functions allowed)
		diags = append(diags, d...)
		vars[name] = v
	}

	// Locals may refer to each other in any order: evaluate those whose
	// references are ready, round after round, until none remain.
	type local struct {
		attr *hcl.Attribute
		done bool
	}
	locals := map[string]*local{}
	for _, b := range blocks.OfType("locals") {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		for name, a := range attrs {
			if prev, dup := locals[name]; dup {
				diags = append(diags, errAt(a.NameRange.Ptr(), "Duplicate local", fmt.Sprintf("Local %q is also defined at %s.", name, prev.attr.NameRange)))
				continue
			}
			locals[name] = &local{attr: a}
		}
	}
	values := map[string]cty.Value{}
	ctx := &hcl.EvalContext{Functions: functions(), Variables: map[string]cty.Value{
		"var": cty.ObjectVal(vars),
	}}
	for progress := true; progress; {
		progress = false
		ctx.Variables["local"] = cty.ObjectVal(values)
		for _, name := range sortedKeys(locals) {
			l := locals[name]
			if l.done || !localsReady(l.attr, values) {
				continue
			}
			v, d := l.attr.Expr.Value(ctx)
			diags = append(diags, d...)
			values[name] = v
			l.done, progress = true, true
			ctx.Variables["local"] = cty.ObjectVal(values)
		}
	}
	for _, name := range sortedKeys(locals) {
		if l := locals[name]; !l.done {
			diags = append(diags, errAt(l.attr.Expr.Range().Ptr(), "Unresolvable local",
				fmt.Sprintf("local.%s refers to a local that does not exist or to itself through a cycle.", name)))
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(values)
	return ctx, diags
}

// localsReady reports whether every local.X that a refers to has a value.
func localsReady(a *hcl.Attribute, values map[string]cty.Value) bool {
	for _, tr := range a.Expr.Variables() {
		if tr.RootName() != "local" || len(tr) < 2 {
			continue
		}
		if attr, ok := tr[1].(hcl.TraverseAttr); ok {
			if _, ok := values[attr.Name]; !ok {
				return false
			}
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
