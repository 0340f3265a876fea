// Package hashslot maps keys to Redis Cluster hash slots.
//
// A key's slot is CRC16(key) mod 16384, where CRC16 is the XMODEM variant
// the cluster specification names (polynomial 0x1021, initial value 0, no
// reflection, no final XOR). If the key holds a hash tag, only the tag is
// hashed, so that keys such as "{user:1}:name" and "{user:1}:mail" share a
// slot. The tag is what lies between the first '{' of the key and the first
// '}' after it, provided that is not empty; otherwise the whole key is
// hashed:
//
//	"{user:1}:name"  hashes "user:1"
//	"foo{}{bar}"     hashes the whole key (the first tag is empty)
//	"foo{{bar}}"     hashes "{bar"
//	"foo{bar}{zap}"  hashes "bar"
//
// Nothing here allocates.
package hashslot

// Count is the number of hash slots of a Redis Cluster.
const Count = 16384

// tables[0] holds the CRC16 of each byte value, for a byte-at-a-time
// update; tables[k] that of each byte value followed by k zero bytes, so
// that eight bytes are taken in at once, their lookups independent of one
// another.
var tables = func() (t [8][256]uint16) {
	const poly = 0x1021
	for i := range t[0] {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ poly
			} else {
				crc <<= 1
			}
		}
		t[0][i] = crc
	}
	for k := 1; k < len(t); k++ {
		for i := range t[k] {
			prev := t[k-1][i]
			t[k][i] = prev<<8 ^ t[0][prev>>8]
		}
	}
	return t
}()

// CRC16 returns the CRC-16/XMODEM checksum of b.
func CRC16(b []byte) uint16 { return crc16(b) }

func crc16[T string | []byte](b T) uint16 {
	var crc uint16
	for len(b) >= 8 {
		crc = tables[7][b[0]^byte(crc>>8)] ^ tables[6][b[1]^byte(crc)] ^
			tables[5][b[2]] ^ tables[4][b[3]] ^ tables[3][b[4]] ^ tables[2][b[5]] ^
			tables[1][b[6]] ^ tables[0][b[7]]
		b = b[8:]
	}
	for i := 0; i < len(b); i++ {
		crc = crc<<8 ^ tables[0][byte(crc>>8)^b[i]]
	}
	return crc
}

// Slot returns the hash slot of key.
func Slot(key string) uint16 { return slot(key) }

// SlotBytes returns the hash slot of key.
func SlotBytes(key []byte) uint16 { return slot(key) }

// Of returns the hash slot of key, a string or bytes alike.
func Of[T string | []byte](key T) uint16 { return slot(key) }

func slot[T string | []byte](key T) uint16 {
	return crc16(Tag(key)) & (Count - 1)
}

// Tag returns the part of key that is hashed: its hash tag if it has a
// non-empty one, else the whole key.
func Tag[T string | []byte](key T) T {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key // an empty tag: the whole key counts
				}
				return key[i+1 : j]
			}
		}
		return key // no '}' after the first '{'
	}
	return key
}
