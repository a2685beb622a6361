package matrix

import (
	"strings"
	"testing"
)

// linearLookup is the reference for lookup: it walks every row of the table
// instead of the first-segment index.
func linearLookup(method, rawPath, rawQuery string) (Route, int) {
	if method == "OPTIONS" {
		return Route{Class: Other}, -1
	}
	family, rest, ok := splitPrefix(rawPath)
	if !ok {
		return Route{Class: Other}, -1
	}
	path := splitSegments(strings.TrimRight(rest, "/"))
	for i := range routes.rows {
		r := &routes.rows[i]
		if r.family != family || !r.method.matches(method, rawQuery) {
			continue
		}
		if room, ok := r.pattern.match(&path); ok {
			return Route{Class: r.class, Room: room}, i
		}
	}
	return Route{Class: Other}, -1
}

func FuzzClassify(f *testing.F) {
	for _, c := range classifyCases {
		f.Add(c.method, c.path, c.query)
	}
	for _, s := range specSamples {
		f.Add(s.method, s.path, s.query)
	}
	f.Add("GET", "/_matrix/client/v3/rooms/%21a%2Fb%3Ac/messages", "since=%")
	f.Add("PUT", "/_matrix/client/v3/rooms/!a:b/state/", "")
	f.Add("GET", "/_matrix/client/v3/a/b/c/d/e/f/g/h/i/j", "")
	f.Add("GET", "/_matrix/client/v3/user/u/rooms/r/account_data/t/x/y/z", "")
	f.Add("", "/_matrix/federation/", "%%%&&==")
	f.Fuzz(func(t *testing.T, method, rawPath, rawQuery string) {
		route, row := lookup(method, rawPath, rawQuery)
		if int(route.Class) >= NumClasses {
			t.Fatalf("class %d out of range", route.Class)
		}
		if route.Room != "" && !strings.Contains(rawPath, route.Room) {
			t.Fatalf("room %q is not in path %q", route.Room, rawPath)
		}
		if strings.Contains(route.Room, "/") {
			t.Fatalf("room %q spans segments", route.Room)
		}
		if got := Classify(method, rawPath, rawQuery); got != route {
			t.Fatalf("Classify = %+v, lookup = %+v", got, route)
		}
		wantRoute, wantRow := linearLookup(method, rawPath, rawQuery)
		if route != wantRoute || row != wantRow {
			t.Fatalf("indexed lookup = %+v (row %d), linear walk = %+v (row %d)", route, row, wantRoute, wantRow)
		}
	})
}
