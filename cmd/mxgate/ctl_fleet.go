package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mxgate/mxgate/fleet"
)

// printFleet prints a zone's fleet: Redis's state, then each live gateway
// with its share of the global and class caps. Nothing outside a fleet.
func printFleet(w io.Writer, st *fleet.Status) {
	if st == nil {
		return
	}
	state := "reachable"
	if !st.RedisUp {
		state = "UNREACHABLE: local limits, keeping the last shares (fail-static)"
	}
	fmt.Fprintf(w, "fleet: %d instances, this is %s; redis %s %s\n", len(st.Instances), st.Name, st.Redis, state)
	if st.PendingToggles > 0 {
		fmt.Fprintf(w, "fleet: %d toggle changes not yet in Redis (pushed when it is back)\n", st.PendingToggles)
	}
	fmt.Fprintln(w, "INSTANCE\tGLOBAL SHARE\tCLASS SHARES")
	for _, in := range st.Instances {
		name := in.Name
		if in.Self {
			name += " (this)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", name, capString(in.GlobalShare), classShares(in.ClassShares))
	}
}

func classShares(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
