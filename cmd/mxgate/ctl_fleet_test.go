package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/fleet"
)

func TestPrintFleet(t *testing.T) {
	st := &fleet.Status{Name: "gw1", Redis: "redis://10.0.0.5:6379/0", RedisUp: false, FailStatic: true, PendingToggles: 1,
		Instances: []fleet.Instance{
			{Name: "gw0", GlobalShare: 86, ClassShares: map[string]int{"history": 11, "search": 2}},
			{Name: "gw1", Self: true, GlobalShare: 85, ClassShares: map[string]int{"history": 11, "search": 1}},
		}}
	var b bytes.Buffer
	printFleet(&b, st)
	out := b.String()
	for _, want := range []string{
		"fleet: 2 instances, this is gw1; redis redis://10.0.0.5:6379/0 UNREACHABLE",
		"fail-static",
		"1 toggle changes not yet in Redis",
		"gw1 (this)\t85\thistory=11 search=1",
		"gw0\t86\thistory=11 search=2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printFleet(&b, nil)
	if b.Len() != 0 {
		t.Errorf("printed %q outside a fleet", b.String())
	}
}

func TestGatewayFleetFlags(t *testing.T) {
	res := defaultGatewayResilience
	res.FleetRedis = "redis://127.0.0.1:6379/0"
	b, err := gatewayConfigWith("http://127.0.0.1:8008", "127.0.0.1:8081", "localhost:2019", res)
	if err != nil {
		t.Fatal(err)
	}
	for _, handle := range gatewayRoutes(t, b) {
		fl, ok := handle[0]["fleet"].(map[string]any)
		if !ok || fl["redis"] != res.FleetRedis || !strings.HasSuffix(fl["name"].(string), "127.0.0.1:8081") {
			t.Errorf("route's mxgate handler fleet = %v, want the URL and a name ending in the listen address", handle[0]["fleet"])
		}
	}
	res.FleetRedis = ""
	b, _ = gatewayConfigWith("http://127.0.0.1:8008", ":8080", "localhost:2019", res)
	if strings.Contains(string(b), `"fleet"`) {
		t.Error("a fleet config without --fleet-redis")
	}
}
