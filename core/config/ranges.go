package config

import (
	"fmt"
	"strconv"
	"strings"
)

// maxExpansion bounds how many names one range expression may produce.
const maxExpansion = 100000

// ExpandRange expands a node-name expression: "pc[001-080]" gives pc001 ..
// pc080 (the width of the first bound sets the zero padding),
// "rack[1-2]-n[1,3,5-6]" gives the cross product, and a name without
// brackets is itself.
func ExpandRange(expr string) ([]string, error) {
	if expr == "" {
		return nil, fmt.Errorf("empty node name")
	}
	out, err := expand(expr)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", expr, err)
	}
	return out, nil
}

// expand expands every bracket of s; the empty string expands to itself.
func expand(s string) ([]string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		if strings.ContainsRune(s, ']') {
			return nil, fmt.Errorf("']' without '['")
		}
		return []string{s}, nil
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("'[' is not closed")
	}
	end += open
	items, err := expandList(s[open+1 : end])
	if err != nil {
		return nil, err
	}
	rest, err := expand(s[end+1:])
	if err != nil {
		return nil, err
	}
	if len(items)*len(rest) > maxExpansion {
		return nil, fmt.Errorf("expands to more than %d names", maxExpansion)
	}
	out := make([]string, 0, len(items)*len(rest))
	for _, it := range items {
		for _, r := range rest {
			out = append(out, s[:open]+it+r)
		}
	}
	return out, nil
}

// expandList expands "001-080" or "1,3,5-6".
func expandList(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a number or range like 001-080", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("range %q must go from a smaller to a larger number", part)
			}
		}
		if b-a > maxExpansion {
			return nil, fmt.Errorf("range %q is larger than %d", part, maxExpansion)
		}
		width := len(lo)
		for i := a; i <= b; i++ {
			out = append(out, fmt.Sprintf("%0*d", width, i))
		}
	}
	return out, nil
}
