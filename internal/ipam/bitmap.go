package ipam

import "math/bits"

// denseLevelMaxWords is the largest level kept as a slice; bigger levels
// are maps of their non-zero words.
const denseLevelMaxWords = 1 << 16

// level is one level of a hierarchical bitmap, dense or sparse.
type level struct {
	dense  []uint64          // non-nil when dense
	sparse map[uint64]uint64 // non-zero words only, when sparse
}

func (l *level) get(i uint64) uint64 {
	if l.dense != nil {
		return l.dense[i]
	}
	return l.sparse[i]
}

func (l *level) put(i, w uint64) {
	if l.dense != nil {
		l.dense[i] = w
		return
	}
	if w == 0 {
		delete(l.sparse, i)
	} else {
		l.sparse[i] = w
	}
}

// bitmap is a 64-ary hierarchical bitmap over n = 2^k bits (k <= 62).
// levels[0] has one bit per item (set = in use); bit j of levels[i+1] is set
// iff word j of levels[i] is full. The last level is a single word whose
// valid bits are topMask.
type bitmap struct {
	levels  []level
	topMask uint64
	n, used uint64
}

func newBitmap(log2n int, denseMax uint64) bitmap {
	n := uint64(1) << uint(log2n)
	b := bitmap{n: n}
	for items := n; ; {
		words := (items + 63) / 64
		var l level
		if words <= denseMax {
			l.dense = make([]uint64, words)
		} else {
			l.sparse = make(map[uint64]uint64)
		}
		b.levels = append(b.levels, l)
		if words == 1 {
			if items == 64 {
				b.topMask = ^uint64(0)
			} else {
				b.topMask = 1<<items - 1
			}
			return b
		}
		items = words
	}
}

func (b *bitmap) full(k int) uint64 {
	if k == len(b.levels)-1 {
		return b.topMask
	}
	return ^uint64(0)
}

func (b *bitmap) test(i uint64) bool {
	return b.levels[0].get(i>>6)&(1<<(i&63)) != 0
}

// set marks i used; it reports false if it already was.
func (b *bitmap) set(i uint64) bool {
	for k := range b.levels {
		l := &b.levels[k]
		wi, bit := i>>6, uint64(1)<<(i&63)
		w := l.get(wi)
		if k == 0 && w&bit != 0 {
			return false
		}
		w |= bit
		l.put(wi, w)
		if w != b.full(k) {
			break
		}
		i = wi
	}
	b.used++
	return true
}

// clear marks i free; it reports false if it already was.
func (b *bitmap) clear(i uint64) bool {
	for k := range b.levels {
		l := &b.levels[k]
		wi, bit := i>>6, uint64(1)<<(i&63)
		old := l.get(wi)
		if k == 0 && old&bit == 0 {
			return false
		}
		l.put(wi, old&^bit)
		if old != b.full(k) {
			break // the level above didn't count this word as full
		}
		i = wi
	}
	b.used--
	return true
}

// lowestFree is the lowest clear bit, or false when every bit is set.
func (b *bitmap) lowestFree() (uint64, bool) {
	top := len(b.levels) - 1
	w := b.levels[top].get(0)
	if w == b.topMask {
		return 0, false
	}
	i := uint64(bits.TrailingZeros64(^w))
	for k := top - 1; k >= 0; k-- {
		i = i<<6 | uint64(bits.TrailingZeros64(^b.levels[k].get(i)))
	}
	return i, true
}
