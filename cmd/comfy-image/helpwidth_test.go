package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/comfy-image/comfy-image/internal/testsupport"
)

// Every command's --help fits 100 columns: its usage, examples, command
// list and flag lines (review of issue 12: flag lines ran to 161).
// Commands are found as a user would, from each help's command list.
func TestEveryHelpFits100Columns(t *testing.T) {
	dir := testsupport.TempDir(t)
	queue := [][]string{nil}
	seen := 0
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		seen++
		res := testsupport.Run(t, dir, nil, append(append([]string{}, path...), "--help")...)
		name := strings.Join(append([]string{"comfy-image"}, path...), " ")
		if res.Code != 0 {
			t.Errorf("%s --help: exit %d\n%s", name, res.Code, res.Stderr)
			continue
		}
		for _, line := range strings.Split(res.Stdout, "\n") {
			if n := utf8.RuneCountInString(line); n > 100 {
				t.Errorf("%s --help: a line of %d columns:\n%s", name, n, line)
			}
		}
		for _, sub := range subcommands(res.Stdout) {
			if sub != "help" {
				queue = append(queue, append(append([]string{}, path...), sub))
			}
		}
	}
	if seen < 10 {
		t.Errorf("only %d commands found from the help's command lists", seen)
	}
}

// subcommands are the names listed under "Available Commands:".
func subcommands(help string) []string {
	var names []string
	in := false
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.HasPrefix(line, "Available Commands:"):
			in = true
		case in && strings.TrimSpace(line) == "":
			in = false
		case in:
			names = append(names, strings.Fields(line)[0])
		}
	}
	return names
}
