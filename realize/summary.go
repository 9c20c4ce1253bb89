package realize

import (
	"fmt"

	"github.com/comfy-image/comfy-image/internal/progress"
)

// summaryName fits a part's name (custom_nodes/<long node name>) in the 40
// columns of a summary line, keeping its distinctive end, so the summary
// fits 100 columns.
func summaryName(s string) string {
	const n = 40
	r := []rune(s)
	if len(r) <= n {
		return fmt.Sprintf("%-*s", n, s)
	}
	return "…" + string(r[len(r)-n+1:])
}

// humanSize is progress.Size with an empty total as "0 B".
func humanSize(n int64) string {
	if n <= 0 {
		return "0 B"
	}
	return progress.Size(n)
}
