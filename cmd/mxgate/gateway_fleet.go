package main

import "os"

// gatewayFleet is the handler's fleet config for `mxgate gateway
// --fleet-redis`: the name defaults to host name and listen address, which
// tells apart gateways on one host.
func gatewayFleet(res gatewayResilience, listen string) map[string]any {
	name := res.FleetName
	if name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "mxgate"
		}
		name = host + listen
		if listen != "" && listen[0] != ':' {
			name = host + "/" + listen
		}
	}
	return map[string]any{"redis": res.FleetRedis, "name": name}
}
