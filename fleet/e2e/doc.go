// Package e2e runs three real `mxgate` processes sharing one real
// redis-server in front of a test upstream, and checks what a fleet
// promises: toggles, rates, herds and caps held once for the fleet, and
// Redis going away failing no request. It has tests only.
package e2e
