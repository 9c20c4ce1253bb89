package reqfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Pyproject is the file a node may declare its requirements in instead of
// requirements.txt (PEP 621 [project].dependencies), as comfy-cli's
// dependency compiler reads both.
const Pyproject = "pyproject.toml"

// ParsePyproject reads [project].dependencies of a pyproject.toml through
// the same checks as a requirements file: each entry must be a PEP 508
// specifier or an https / git+https direct reference. ok is false when the
// file declares no dependencies (no [project] table or no list).
func ParsePyproject(src Source, owner, file string) (lines []Line, ok bool, err error) {
	data, err := src.ReadFile(file)
	if err != nil {
		problem := err.Error()
		if errors.Is(err, ErrSymlink) {
			problem = "is a symlink; a pyproject.toml must be a regular file of the repository"
		}
		return nil, false, &Error{Owner: owner, File: file, Problem: problem}
	}
	var doc struct {
		Project struct {
			Dependencies any `toml:"dependencies"`
		} `toml:"project"`
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		e := &Error{Owner: owner, File: file, Problem: "not valid TOML: " + err.Error()}
		var perr toml.ParseError
		if errors.As(err, &perr) {
			e.Line, e.Problem = perr.Position.Line, "not valid TOML: "+perr.Message
		}
		return nil, false, e
	}
	if doc.Project.Dependencies == nil {
		return nil, false, nil
	}
	deps, isList := doc.Project.Dependencies.([]any)
	if !isList {
		return nil, false, &Error{Owner: owner, File: file, Problem: fmt.Sprintf("[project].dependencies is a %T, expected a list of requirement strings", doc.Project.Dependencies)}
	}
	text := string(data)
	for i, d := range deps {
		s, isString := d.(string)
		num := lineOf(text, s)
		if !isString {
			return nil, false, &Error{Owner: owner, File: file, Line: num,
				Problem: fmt.Sprintf("[project].dependencies[%d] is a %T, expected a requirement string", i, d)}
		}
		name, err := Check(s)
		if err != nil {
			return nil, false, &Error{Owner: owner, File: file, Line: num,
				Problem: fmt.Sprintf("[project].dependencies[%d]: %v", i, err), Hint: hintOverride}
		}
		lines = append(lines, Line{Text: strings.TrimSpace(s), Name: name, File: file, Num: num})
	}
	return lines, true, nil
}

// lineOf is the 1-based line of the file where the string value s is
// written (quoted either way), for error messages; 0 when not found.
func lineOf(text, s string) int {
	for _, q := range []string{strconv.Quote(s), "'" + s + "'"} {
		if i := strings.Index(text, q); i >= 0 {
			return strings.Count(text[:i], "\n") + 1
		}
	}
	return 0
}
