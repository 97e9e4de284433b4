package client

import (
	"math"
	"time"
)

// Backoff is the reconnect schedule: attempt n waits min(Max, Initial·Multiplierⁿ) times a
// uniform factor in [1-Jitter, 1+Jitter]. The attempt count starts again after a Welcome.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	// Jitter is 0..1 (0: the default 0.2; negative: none).
	Jitter float64
}

// DefaultBackoff is 100 ms doubling to 5 s, ±20 % (as the TypeScript client).
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff
	if b.Initial > 0 {
		d.Initial = b.Initial
	}
	if b.Max > 0 {
		d.Max = b.Max
	}
	if b.Multiplier >= 1 {
		d.Multiplier = b.Multiplier
	}
	if b.Jitter > 0 {
		d.Jitter = math.Min(1, b.Jitter)
	} else if b.Jitter < 0 {
		d.Jitter = 0
	}
	return d
}

// Delay is the wait before reconnect attempt n (0-based); random returns a value in [0, 1).
func (b Backoff) Delay(attempt int, random func() float64) time.Duration {
	b = b.withDefaults()
	if attempt < 0 {
		attempt = 0
	}
	base := math.Min(float64(b.Max), float64(b.Initial)*math.Pow(b.Multiplier, float64(attempt)))
	return time.Duration(base * (1 - b.Jitter + 2*b.Jitter*random()))
}
