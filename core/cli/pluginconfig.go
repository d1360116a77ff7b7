package cli

import (
	"context"
	"fmt"

	"github.com/diskcast/diskcast/core/config"
	"github.com/diskcast/diskcast/core/plugin"
	"github.com/diskcast/diskcast/sdk/base"
	"github.com/hashicorp/hcl/v2"
)

// configurePlugins decodes every plugin block of cfg with the schema its
// plugin reports and applies the settings, starting the plugins through
// m. Problems are diagnostics at the block or the attribute.
func configurePlugins(ctx context.Context, m *plugin.Manager, cfg *config.Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, p := range cfg.Plugins {
		fail := func(summary string, err error) {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: err.Error(), Subject: p.DefRange.Ptr()})
		}
		c, err := m.Configurable(ctx, base.Kind(p.Kind), p.Name)
		if err != nil {
			fail(fmt.Sprintf("plugin %s %q cannot be used", p.Kind, p.Name), err)
			continue
		}
		schema, err := c.ConfigSchema(ctx)
		if err != nil {
			fail(fmt.Sprintf("plugin %s %q did not report its settings", p.Kind, p.Name), err)
			continue
		}
		settings, ds := config.DecodePlugin(p, schema)
		diags = append(diags, ds...)
		if ds.HasErrors() {
			continue
		}
		if err := c.Configure(ctx, settings); err != nil {
			fail(fmt.Sprintf("plugin %s %q refused its settings", p.Kind, p.Name), err)
		}
	}
	return diags
}
