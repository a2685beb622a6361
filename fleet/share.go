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

// HerdShareOf is the part of a herd allowance (limiter.HerdAllowance of
// the fleet's cap) that the gateway at rank of n takes: allowance ÷ n, the
// remainder one each to the first ranks, as ShareOf, but down to 0, so
// that the gateways together let a herd hold what one gateway would and
// keep the rest for the class's other requests. n <= 1 gives allowance.
func HerdShareOf(allowance, rank, n int) int {
	if n <= 1 {
		return allowance
	}
	s := allowance / n
	if rank < allowance%n {
		s++
	}
	return s
}
