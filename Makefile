# The one test command (README, CI): vet, then every test under the race
# detector, including the end-to-end tests against real homeservers, which
# install what they need under the user cache dir on first use (README,
# "Prerequisites"). internal/testprogress prints each package's result as it
# finishes, what a package's TestMain says it is provisioning, the output of
# failed tests, a line when nothing was printed for a minute, and a closing
# count; pipefail keeps go test's own exit status.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

# PKGS narrows a run: make test PKGS=./caddymodule
PKGS ?= ./...

.PHONY: test build short bench fuzz

test:
	go vet $(PKGS)
	go test -race -count=1 -timeout 30m -json $(PKGS) | go run ./internal/testprogress

short:
	go test -race -short -count=1 ./...

build:
	go build -o mxgate ./cmd/mxgate

bench:
	go test -run '^$$' -bench . -benchmem ./limiter ./matrix ./herd ./gate

fuzz:
	go test -run '^$$' -fuzz FuzzClassify -fuzztime 60s ./matrix
	go test -run '^$$' -fuzz FuzzCredentialAgreesWithHomeservers -fuzztime 30s ./matrix
	go test -run '^$$' -fuzz FuzzKeyOfSeparatesCredentials -fuzztime 30s ./herd
	go test -run '^$$' -fuzz FuzzUnmarshalCaddyfile -fuzztime 30s ./caddymodule
	go test -run '^$$' -fuzz FuzzFileToggles -fuzztime 30s ./limiter
