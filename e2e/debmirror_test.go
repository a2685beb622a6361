package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// debianSuites are the archive suites that mark a sources entry as the Debian
// archive itself (not its security or updates suites, nor a third-party
// repository that happens to ship a "main" component).
var debianSuites = []string{
	"oldoldstable", "oldstable", "stable", "testing", "unstable", "sid",
	"buster", "bullseye", "bookworm", "trixie", "forky", "duke",
}

// hostDebianMirror returns the Debian archive URL the host's apt already
// uses, read from /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line
// and deb822 formats), so the repository never names a mirror.
// $MXGATE_DEBIAN_MIRROR overrides it.
func hostDebianMirror() (string, error) {
	if m := os.Getenv("MXGATE_DEBIAN_MIRROR"); m != "" {
		return m, nil
	}
	files := []string{"/etc/apt/sources.list"}
	for _, pattern := range []string{"*.list", "*.sources"} {
		more, _ := filepath.Glob(filepath.Join("/etc/apt/sources.list.d", pattern))
		files = append(files, more...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		parse := parseOneLineSources
		if strings.HasSuffix(f, ".sources") {
			parse = parseDeb822Sources
		}
		if m := parse(string(data)); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("no Debian archive among the host's apt sources (%s); set MXGATE_DEBIAN_MIRROR", strings.Join(files, ", "))
}

// parseOneLineSources returns the URI of the first `deb` line for a Debian
// archive suite, or "".
func parseOneLineSources(text string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		rest := fields[1:]
		if strings.HasPrefix(rest[0], "[") { // options: [arch=amd64 signed-by=…]
			for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest = rest[1:]
			}
		}
		if len(rest) >= 2 && slices.Contains(debianSuites, rest[1]) {
			return rest[0]
		}
	}
	return ""
}

// parseDeb822Sources returns the first URI of the first enabled `deb` stanza
// listing a Debian archive suite, or "".
func parseDeb822Sources(text string) string {
	for _, stanza := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		var last string
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if line[0] == ' ' || line[0] == '\t' { // continuation
				fields[last] += " " + strings.TrimSpace(line)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if !slices.Contains(strings.Fields(fields["types"]), "deb") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		uris := strings.Fields(fields["uris"])
		if len(uris) == 0 {
			continue
		}
		for _, s := range strings.Fields(fields["suites"]) {
			if slices.Contains(debianSuites, s) {
				return uris[0]
			}
		}
	}
	return ""
}
