package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagError makes a flag parse error a usage error and, for an unknown
// flag, suggests the command's flags that are close to it (cobra suggests
// commands only).
func flagError(cmd *cobra.Command, err error) error {
	if !cmd.HasParent() && cmd.Flags().NArg() > 0 {
		// `comfy-image lok --version-id x`: the root parsed the flags of a
		// command it does not know; the command is the mistake.
		return unknownCommand(cmd, cmd.Flags().Arg(0))
	}
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok {
		return usageError{err}
	}
	if s := suggestFlags(cmd, name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg + fmt.Sprintf(" (see %s --help)", cmd.CommandPath()))}
}

// suggestFlags lists the flags of cmd within two edits of name, or that
// name is a prefix of, closest first.
func suggestFlags(cmd *cobra.Command, name string) []string {
	type cand struct {
		flag string
		dist int
	}
	var cs []cand
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if seen[f.Name] || f.Hidden {
			return
		}
		seen[f.Name] = true
		d := levenshtein(strings.ToLower(name), f.Name)
		if d <= 2 || (len(name) >= 3 && strings.HasPrefix(f.Name, name)) {
			cs = append(cs, cand{"--" + f.Name, d})
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].dist < cs[j].dist })
	var out []string
	for _, c := range cs {
		out = append(out, c.flag)
	}
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}

// levenshtein is the edit distance between a and b (insert, delete, replace).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
