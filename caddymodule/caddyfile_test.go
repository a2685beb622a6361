package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// Golden adapter tests in Caddy's own format: testdata/caddyfile_adapt/*
// hold a Caddyfile, a line of dashes, and the JSON it must adapt to.
func TestCaddyfileAdaptsToGoldenJSON(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in, want, ok := strings.Cut(string(data), "\n----------\n")
		if !ok {
			t.Fatalf("%s: no ---------- separator", f)
		}
		if !caddytest.CompareAdapt(t, f, in+"\n", "caddyfile", strings.TrimSpace(want)) {
			t.Errorf("%s: adapted JSON differs", f)
		}
	}
}

// The shipped example must keep adapting.
func TestCaddyfileExampleAdapts(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(data, map[string]any{"filename": "Caddyfile.example"}); err != nil {
		t.Fatalf("Caddyfile.example: %v", err)
	}
}

// Wrong Caddyfiles fail with the file and line of the mistake.
func TestCaddyfileErrorsNameFileAndLine(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown subdirective", "mxgate {\n\tmax_inflight 10\n\tbogus 1\n}", "Caddyfile:5"},
		{"repeated subdirective", "mxgate {\n\tmax_inflight 10\n\tmax_inflight 20\n}", "Caddyfile:5"},
		{"repeated class", "mxgate {\n\tclass search {\n\t\tqueue 1\n\t}\n\tclass search {\n\t}\n}", "Caddyfile:7"},
		{"unknown class", "mxgate {\n\tclass nonsense {\n\t}\n}", "Caddyfile:4"},
		{"unknown class option", "mxgate {\n\tclass search {\n\t\tqueue 1\n\t\tspeed 3\n\t}\n}", "Caddyfile:6"},
		{"repeated class option", "mxgate {\n\tclass search {\n\t\tqueue 1\n\t\tqueue 2\n\t}\n}", "Caddyfile:6"},
		{"bad duration", "mxgate {\n\tqueue_timeout soon\n}", "Caddyfile:4"},
		{"negative number", "mxgate {\n\tmax_inflight -3\n}", "Caddyfile:4"},
		{"retry_after min > max", "mxgate {\n\tretry_after 30s 2s\n}", "Caddyfile:4"},
		{"rate without burst", "mxgate {\n\tclass search {\n\t\trate 1\n\t}\n}", "Caddyfile:5"},
		{"rate NaN", "mxgate {\n\tclass search {\n\t\trate NaN 2\n\t}\n}", "Caddyfile:5"},
		{"bad priority", "mxgate {\n\tclass search {\n\t\tpriority urgent\n\t}\n}", "Caddyfile:5"},
		{"shed unknown class", "mxgate {\n\tshed everything\n}", "Caddyfile:4"},
		{"herd unknown option", "mxgate {\n\therd {\n\t\tsize 3\n\t}\n}", "Caddyfile:5"},
		{"herd min_users 0", "mxgate {\n\therd {\n\t\tmin_users 0\n\t}\n}", "Caddyfile:5"},
		{"argument on directive", "mxgate now {\n}", "Caddyfile:3"},
		{"adaptive bad argument", "mxgate {\n\tadaptive maybe\n}", "Caddyfile:4"},
		{"class adaptive bad argument", "mxgate {\n\tclass history {\n\t\tadaptive yes\n\t}\n}", "Caddyfile:5"},
		{"ride_through unknown option", "mxgate {\n\tride_through {\n\t\tretries 3\n\t}\n}", "Caddyfile:5"},
		{"ride_through failures 0", "mxgate {\n\tride_through {\n\t\tfailures 0\n\t}\n}", "Caddyfile:5"},
		{"ride_through bad slow_start", "mxgate {\n\tride_through {\n\t\tslow_start soon\n\t}\n}", "Caddyfile:5"},
		{"ride_through repeated option", "mxgate {\n\tride_through {\n\t\tfailures 2\n\t\tfailures 3\n\t}\n}", "Caddyfile:6"},
		{"ride_through off with block", "mxgate {\n\tride_through off {\n\t\tfailures 2\n\t}\n}", "Caddyfile:5"},
		{"error_shed threshold > 1", "mxgate {\n\terror_shed {\n\t\tthreshold 1.5\n\t}\n}", "Caddyfile:5"},
		{"error_shed window 0", "mxgate {\n\terror_shed {\n\t\twindow 0s\n\t}\n}", "Caddyfile:5"},
		{"error_shed bad argument", "mxgate {\n\terror_shed now\n}", "Caddyfile:4"},
		{"cors bad argument", "mxgate {\n\tcors maybe\n}", "Caddyfile:4"},
		{"cors off with block", "mxgate {\n\tcors off {\n\t\tallow_origin *\n\t}\n}", "Caddyfile:5"},
		{"cors unknown option", "mxgate {\n\tcors {\n\t\tmax_age 5\n\t}\n}", "Caddyfile:5"},
		{"cors two origins", "mxgate {\n\tcors {\n\t\tallow_origin a, b\n\t}\n}", "Caddyfile:5"},
		{"cors repeated option", "mxgate {\n\tcors {\n\t\tallow_origin *\n\t\tallow_origin *\n\t}\n}", "Caddyfile:6"},
		{"share_state outside room_state", "mxgate {\n\tclass history {\n\t\tshare_state\n\t}\n}", "Caddyfile:5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := ":8080 {\n" + "\t" + strings.ReplaceAll(tc.body, "\n", "\n\t") + "\n\treverse_proxy 127.0.0.1:8008\n}\n"
			src = "\n" + src // the site block starts on line 2
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("accepted:\n%s", src)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s\n%s", err, tc.want, src)
			}
		})
	}
}
