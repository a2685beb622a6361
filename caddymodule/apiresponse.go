package caddymodule

// The answers of the admin API's routes (admin.go, console.go).

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

func apiError(code int, msg string) error {
	return caddy.APIError{HTTPStatus: code, Err: errors.New(msg)}
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// The status line is out: an encoding failure (a client gone) can
	// only be dropped.
	_ = enc.Encode(v)
	return nil
}
