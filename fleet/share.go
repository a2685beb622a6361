package fleet

// ShareOf is the part of cap that the gateway at rank (0-based, in the
// fleet's sorted member list) of n takes: cap ÷ n, the remainder going one
// each to the first ranks, so that the shares add up to cap exactly; at
// least 1, so that no gateway is shut out (with more gateways than cap, the
// shares add up to n). cap <= 0 (no cap) and n <= 1 give cap unchanged.
func ShareOf(cap, rank, n int) int {
	if cap <= 0 || n <= 1 {
		return cap
	}
	s := cap / n
	if rank < cap%n {
		s++
	}
	return max(s, 1)
}
