//! A small LZ77 compressor for list chunks (Redis compresses quicklist nodes with LZF for
//! `list-compress-depth`; this is the same idea in a format of our own).
//!
//! # Format
//!
//! A sequence of *runs*: `token [literal-length ext] literals [offset match-length ext]`.
//!
//! * `token`: bits 7–5 the literal count (7: "7 plus an extension"), bits 4–1 the match
//!   length minus [`MIN_MATCH`] (15: "15 plus an extension"), bit 0 the offset's width.
//!   An extension is bytes that add their values, a byte of 255 meaning another follows.
//! * `offset`: how far back the match starts in the output, 1..=65535: one byte when
//!   bit 0 is clear (offsets below 256: a list record repeating its neighbour's prefix
//!   costs a token, its new bytes and one offset byte), else two bytes little-endian. A
//!   match may overlap the bytes it produces (a byte repeated is offset 1).
//! * The last run has literals only: the input ends right after them.
//!
//! The output size is not stored; the caller keeps it and [`decompress`] checks it, so
//! any input at all either decodes to exactly that many bytes or is refused (`None`),
//! never panics and never allocates more than the expected size.
//!
//! # Costs
//!
//! Compression is greedy, with one step of lazy matching (a longer match one byte on wins),
//! and a 4096-entry hash table of 4-byte sequences: linear in the
//! input, and it gives up as soon as the output cannot be [`MIN_GAIN`] bytes smaller than
//! the input. Decompression is linear in the output.

/// Shortest match worth a back-reference (a run costs at least three bytes).
const MIN_MATCH: usize = 4;
/// Farthest back a match may start.
const MAX_OFFSET: usize = u16::MAX as usize;
const HASH_BITS: u32 = 12;
/// Compressed data must be at least this many bytes smaller than the input to be kept.
pub const MIN_GAIN: usize = 8;

#[inline]
fn hash(v: u32) -> usize {
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

#[inline]
fn read4(d: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])
}

/// Appends a length extension: `n` as a run of 255s and a final byte below 255.
fn put_ext(out: &mut Vec<u8>, mut n: usize) {
    while n >= 255 {
        out.push(255);
        n -= 255;
    }
    out.push(n as u8);
}

/// Literal counts from this up take an extension.
const LIT_EXT: usize = 7;
/// Match lengths (minus `MIN_MATCH`) from this up take an extension.
const MATCH_EXT: usize = 15;
/// Token bit 0: the offset takes two bytes.
const WIDE: u8 = 1;

/// Appends one run: `lits`, then (unless this is the last run) a match.
fn put_run(out: &mut Vec<u8>, lits: &[u8], matched: Option<(usize, usize)>) {
    let l = lits.len();
    let m = matched.map_or(0, |(_, len)| len - MIN_MATCH);
    let wide = matched.is_some_and(|(offset, _)| offset > 255);
    out.push(((l.min(LIT_EXT) as u8) << 5) | ((m.min(MATCH_EXT) as u8) << 1) | u8::from(wide));
    if l >= LIT_EXT {
        put_ext(out, l - LIT_EXT);
    }
    out.extend_from_slice(lits);
    if let Some((offset, _)) = matched {
        if wide {
            out.extend_from_slice(&(offset as u16).to_le_bytes());
        } else {
            out.push(offset as u8);
        }
        if m >= MATCH_EXT {
            put_ext(out, m - MATCH_EXT);
        }
    }
}

/// Compresses `src` into `out` (cleared first). Returns false, leaving `out` unspecified,
/// when the result would not be at least [`MIN_GAIN`] bytes smaller than `src`.
pub fn compress(src: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(budget) = src.len().checked_sub(MIN_GAIN) else {
        return false;
    };
    // Positions plus one (0: empty slot).
    let mut table = [0u32; 1 << HASH_BITS];
    // The match the table offers at `i`: (start, length).
    let match_at = |table: &[u32], i: usize| -> Option<(usize, usize)> {
        let c = (table[hash(read4(src, i))] as usize).checked_sub(1)?;
        if i - c > MAX_OFFSET || src[c..c + MIN_MATCH] != src[i..i + MIN_MATCH] {
            return None;
        }
        let mut len = MIN_MATCH;
        while i + len < src.len() && src[c + len] == src[i + len] {
            len += 1;
        }
        Some((c, len))
    };
    let mut anchor = 0;
    let mut i = 0;
    while i + MIN_MATCH <= src.len() {
        let found = match_at(&table, i);
        table[hash(read4(src, i))] = (i + 1) as u32;
        if let Some((c, len)) = found {
            // Lazy matching: a longer match one byte on is worth a literal.
            let later = i + 1 + MIN_MATCH <= src.len();
            if !later || match_at(&table, i + 1).is_none_or(|(_, next)| next <= len) {
                put_run(out, &src[anchor..i], Some((i - c, len)));
                if out.len() >= budget {
                    return false;
                }
                // Index the match's last position too: the next match often starts there.
                let last = i + len - 1;
                if last > i && last + MIN_MATCH <= src.len() {
                    table[hash(read4(src, last))] = (last + 1) as u32;
                }
                i += len;
                anchor = i;
                continue;
            }
        }
        i += 1;
        if out.len() + (i - anchor) >= budget {
            return false;
        }
    }
    put_run(out, &src[anchor..], None);
    out.len() <= budget
}

/// Reads a length extension, refusing anything beyond `limit`.
fn read_ext(src: &[u8], p: &mut usize, limit: usize) -> Option<usize> {
    let mut n = 0usize;
    loop {
        let b = *src.get(*p)?;
        *p += 1;
        n += usize::from(b);
        if n > limit {
            return None;
        }
        if b != 255 {
            return Some(n);
        }
    }
}

/// Decompresses `src`, which must decode to exactly `size` bytes; `None` otherwise.
pub fn decompress(src: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(size);
    let mut p = 0;
    while p < src.len() {
        let token = src[p];
        p += 1;
        let mut lits = usize::from(token >> 5);
        if lits == LIT_EXT {
            lits += read_ext(src, &mut p, size)?;
        }
        if lits > size - out.len() {
            return None;
        }
        out.extend_from_slice(src.get(p..p.checked_add(lits)?)?);
        p += lits;
        if p == src.len() {
            // The last run: literals only.
            return (token & 0x1F == 0 && out.len() == size).then_some(out);
        }
        let offset = if token & WIDE != 0 {
            p += 2;
            usize::from(u16::from_le_bytes([*src.get(p - 2)?, *src.get(p - 1)?]))
        } else {
            p += 1;
            usize::from(*src.get(p - 1)?)
        };
        let mut len = usize::from((token >> 1) & 15);
        if len == MATCH_EXT {
            len += read_ext(src, &mut p, size)?;
        }
        let len = len + MIN_MATCH;
        if offset == 0 || offset > out.len() || len > size - out.len() {
            return None;
        }
        let start = out.len() - offset;
        if offset >= len {
            out.extend_from_within(start..start + len);
        } else {
            // Overlapping: each copied byte may be one this match just produced.
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    (out.len() == size).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Rng;

    fn round_trip(src: &[u8]) -> Option<usize> {
        let mut out = Vec::new();
        if !compress(src, &mut out) {
            return None;
        }
        assert!(out.len() + MIN_GAIN <= src.len());
        assert_eq!(decompress(&out, src.len()).as_deref(), Some(src));
        Some(out.len())
    }

    #[test]
    fn list_like_records_compress_well() {
        let mut src = Vec::new();
        for i in 0..600 {
            src.push(0);
            src.extend_from_slice(format!("element:{}", 100_000 + i).as_bytes());
        }
        let packed = round_trip(&src).expect("compressible");
        assert!(packed * 2 < src.len(), "{packed} of {}", src.len());
    }

    #[test]
    fn runs_and_long_lengths_round_trip() {
        // One byte repeated (overlapping matches), long literal runs, long matches.
        round_trip(&[7u8; 10_000]).expect("compressible");
        let mut rng = Rng::seeded(0x1234_5678);
        let noise: Vec<u8> = (0..3000).map(|_| rng.next() as u8).collect();
        let mut src = noise.clone();
        src.extend_from_slice(&noise);
        src.extend_from_slice(&[0u8; 700]);
        src.extend_from_slice(&noise[..100]);
        round_trip(&src).expect("compressible");
    }

    #[test]
    fn incompressible_input_is_refused() {
        let mut rng = Rng::seeded(99);
        let noise: Vec<u8> = (0..8192).map(|_| rng.next() as u8).collect();
        assert_eq!(round_trip(&noise), None);
        assert_eq!(round_trip(b""), None);
        assert_eq!(round_trip(b"short"), None);
    }

    #[test]
    fn random_inputs_round_trip() {
        let mut rng = Rng::seeded(0xDEAD_BEEF);
        for _ in 0..2000 {
            let n = rng.below(3000);
            let alphabet = 1 + rng.below(20) as u64;
            let src: Vec<u8> = (0..n).map(|_| (rng.next() % alphabet) as u8).collect();
            let mut out = Vec::new();
            if compress(&src, &mut out) {
                assert_eq!(decompress(&out, src.len()).as_deref(), Some(&src[..]));
            }
        }
    }

    #[test]
    fn any_bytes_never_panic_the_decoder() {
        let mut rng = Rng::seeded(42);
        let mut src = Vec::new();
        for i in 0..300 {
            src.extend_from_slice(format!("item-{}", i % 37).as_bytes());
        }
        let mut good = Vec::new();
        assert!(compress(&src, &mut good));
        for _ in 0..20_000 {
            let mut bad = good.clone();
            match rng.below(3) {
                0 => {
                    let at = rng.below(bad.len());
                    bad[at] ^= 1 << rng.below(8);
                }
                1 => bad.truncate(rng.below(bad.len())),
                _ => {
                    bad = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                }
            }
            let size = if rng.below(2) == 0 {
                src.len()
            } else {
                rng.below(5000)
            };
            if let Some(v) = decompress(&bad, size) {
                assert_eq!(v.len(), size);
            }
        }
        assert_eq!(decompress(&good, src.len() - 1), None);
        assert_eq!(decompress(&good, src.len() + 1), None);
    }
}
