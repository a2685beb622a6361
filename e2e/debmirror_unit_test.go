package e2e

import "testing"

func TestParseDeb822Sources(t *testing.T) {
	text := `Types: deb
# a comment
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm

Types: deb
URIs: http://off.invalid/debian
Suites: bookworm
Enabled: no

Types: deb
URIs: http://mirror.invalid/debian
  http://second.invalid/debian
Suites: bookworm bookworm-updates
Components: main
`
	if got, want := parseDeb822Sources(text), "http://mirror.invalid/debian"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := parseDeb822Sources("Types: deb\nURIs: http://x.invalid/apt\nSuites: cloud-sdk-bookworm\n"); got != "" {
		t.Fatalf("third-party suite taken as the archive: %q", got)
	}
}

func TestParseOneLineSources(t *testing.T) {
	text := `# deb http://commented.invalid/debian sid main
deb http://mirror.invalid/debian-security bookworm-security main
deb-src http://src.invalid/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main contrib
`
	if got, want := parseOneLineSources(text), "http://mirror.invalid/debian"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
