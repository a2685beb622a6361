# The one test command (README, CI): vet, then every test under the race
# detector, including the end-to-end tests against a real Dendrite, which
# installs itself into ~/.cache/mxgate-dendrite on first use.
.PHONY: test build short bench fuzz

test:
	go vet ./...
	go test -race -count=1 -timeout 30m ./...

short:
	go test -race -short -count=1 ./...

build:
	go build -o mxgate ./cmd/mxgate

bench:
	go test -run '^$$' -bench . -benchmem ./limiter ./matrix ./herd ./gate

fuzz:
	go test -run '^$$' -fuzz FuzzClassify -fuzztime 60s ./matrix
	go test -run '^$$' -fuzz FuzzAccessToken -fuzztime 30s ./matrix
	go test -run '^$$' -fuzz FuzzUnmarshalCaddyfile -fuzztime 30s ./caddymodule
	go test -run '^$$' -fuzz FuzzFileToggles -fuzztime 30s ./limiter
