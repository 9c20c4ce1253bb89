package repourl

import "testing"

func TestRedactKeepsNoCredentials(t *testing.T) {
	for raw, want := range map[string]string{
		"https://user:s3cret@example.com/org/repo.git":       "https://example.com/org/repo.git",
		"https://x-access-token:${GH_TOKEN}@example.com/o/r": "https://example.com/o/r",
		"https://example.com/o/r":                            "https://example.com/o/r",
		"git@github.com:org/repo.git":                        "git@github.com:org/repo.git",
		"http://tok@127.0.0.1:8080/r?x=1":                    "http://127.0.0.1:8080/r?x=1",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestExpandUserinfoInMemory(t *testing.T) {
	u, err := Parse("https://x:${TOK}@example.com/o/r")
	if err != nil {
		t.Fatal(err)
	}
	if refs := Refs(u.String()); len(refs) != 1 || refs[0] != "TOK" {
		t.Errorf("Refs = %q", refs)
	}
	user, pass, err := ExpandUserinfo(u, func(n string) (string, bool) { return "value-of-" + n, n == "TOK" })
	if err != nil || user != "x" || pass != "value-of-TOK" {
		t.Errorf("ExpandUserinfo = %q %q %v", user, pass, err)
	}
	if _, _, err := ExpandUserinfo(u, func(string) (string, bool) { return "", false }); err == nil {
		t.Error("an unset variable expanded without an error")
	}
}
