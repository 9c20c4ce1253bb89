package materialize_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusedWheelMemberIsBadInput: a wheel member refused for safety is
// the wheel's fault (bad input from an index or --find-links: exit 2), and
// the error names the wheel and the member; a wheel that cannot be read
// at all is not marked so.
func TestRefusedWheelMemberIsBadInput(t *testing.T) {
	for _, m := range []member{
		{name: strings.Repeat("../", 12) + "etc/passwd", content: "x\n"},
		{name: "/etc/passwd", content: "x\n"},
		{name: `pkg\..\..\..\etc\passwd`, content: "x\n"},
		{name: "pkg-1.0.data/purelib/../../bin/evil", content: "x\n"},
		{name: "pkg-1.0.data/other/x", content: "x\n"},
		{name: "pkg-1.0.data/data/pyvenv.cfg", content: "home = /tmp\n"},
		{name: "pkg-1.0.dist-info/entry_points.txt", content: "[console_scripts]\na/b = pkg:main\n"},
	} {
		t.Run(m.name, func(t *testing.T) {
			file := writeWheel(t, m)
			_, err := unpack(t, file)
			var bad interface{ BadInput() bool }
			if err == nil || !errors.As(err, &bad) || !bad.BadInput() {
				t.Fatalf("error %v (%T) is not marked as bad input (exit 2)", err, err)
			}
			named := m.name
			if strings.HasSuffix(m.name, "entry_points.txt") {
				named = "a/b"
			} else if strings.HasSuffix(m.name, "pyvenv.cfg") {
				named = "pyvenv.cfg"
			}
			for _, want := range []string{filepath.Base(file), named} {
				if !strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), fmt.Sprintf("%q", want)) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
	_, err := unpack(t, filepath.Join(t.TempDir(), "pkg-1.0-py3-none-any.whl"))
	var bad interface{ BadInput() bool }
	if err == nil || errors.As(err, &bad) && bad.BadInput() {
		t.Errorf("a wheel file that is not there: %v, want a failure that is not bad input", err)
	}
}
