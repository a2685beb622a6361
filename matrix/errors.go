package matrix

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// ErrUnrecognized is the Matrix error code for a request the server does not
// recognise.
const ErrUnrecognized = "M_UNRECOGNIZED"

// WriteError writes a complete Matrix error answer: {"errcode","error"}.
func WriteError(w http.ResponseWriter, status int, errcode, message string) {
	body, _ := json.Marshal(struct {
		ErrCode string `json:"errcode"`
		Error   string `json:"error"`
	}{errcode, message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
