package redpipe

import (
	"math"
	"testing"
)

// NewValue takes integers of every size, as its doc says, instead of
// panicking on all but int and int64.
func TestNewValueIntegersOfEverySize(t *testing.T) {
	for _, tc := range []struct {
		x    any
		want int64
	}{
		{int8(-8), -8}, {int16(-16), -16}, {int32(-32), -32}, {int64(-64), -64},
		{uint(1), 1}, {uint8(8), 8}, {uint16(16), 16}, {uint32(32), 32}, {uint64(math.MaxInt64), math.MaxInt64},
	} {
		v := NewValue(tc.x)
		n, err := v.Int64()
		if v.Kind() != KindInteger || err != nil || n != tc.want {
			t.Errorf("NewValue(%T(%v)): kind %v, Int64 %d, %v; want integer %d", tc.x, tc.x, v.Kind(), n, err, tc.want)
		}
	}
	big := NewValue(uint64(math.MaxUint64))
	s, err := big.Text()
	if big.Kind() != KindBigNumber || err != nil || s != "18446744073709551615" {
		t.Errorf("NewValue(MaxUint64): kind %v, Text %q, %v", big.Kind(), s, err)
	}
	if _, err := big.Int64(); err == nil {
		t.Error("Int64 of MaxUint64 gave no error")
	}
	if f, err := NewValue(float32(1.5)).Float64(); err != nil || f != 1.5 {
		t.Errorf("NewValue(float32(1.5)).Float64() = %v, %v", f, err)
	}
}
