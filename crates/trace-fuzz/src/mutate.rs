//! Deterministic mutations: the input number `index` of a run with `seed`
//! is always the same bytes, so a failure is reproduced from the two
//! numbers alone.

/// Mutants never grow beyond this, so that one input stays cheap.
pub const MAX_INPUT: usize = 1 << 20;

/// SplitMix64: tiny, fast, and good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Mixes the run's seed, the reader and the input number into the seed of
/// that one input.
pub fn input_rng(seed: u64, reader: usize, index: u64) -> Rng {
    let mut mix = Rng::new(seed ^ (reader as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    let a = mix.next_u64();
    Rng::new(a ^ index.wrapping_mul(0xa076_1d64_78bd_642f))
}

/// Bytes that matter to the formats read here.
const INTERESTING: &[u8] = b"\0\xff\x80\x7f\"\\{}[],: \n\t09-+.eE/;()x\x08\x12\x1a\x22";

/// Applies one to four mutations to `data`, using `dict` for whole tokens.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]]) {
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, data, dict);
        data.truncate(MAX_INPUT);
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, dict: &[&[u8]]) {
    let len = data.len();
    let at = rng.below(len + 1);
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let most = if rng.chance(4) { len / 4 + 1 } else { 64 };
            let n = 1 + rng.below(most);
            let end = (at + n).min(len);
            data.drain(at..end);
        }
        3 if len > 0 => {
            // A repeated slice: long names, deep nesting, many events.
            let start = rng.below(len);
            let n = 1 + rng.below((len - start).min(256));
            let times = 1usize << rng.below(13);
            let piece = data[start..start + n].to_vec();
            let total = (n * times).min(MAX_INPUT.saturating_sub(len));
            let insert: Vec<u8> = piece.iter().copied().cycle().take(total).collect();
            data.splice(at..at, insert);
        }
        4 => {
            // A run of one byte: whitespace between tokens, long digits.
            let byte = *[b' ', b'\n', b'0', b'9', b'a', b'[', b'{', b'\\', 0]
                .get(rng.below(9))
                .unwrap_or(&b' ');
            let n = (1usize << rng.below(17)).min(MAX_INPUT.saturating_sub(len));
            data.splice(at..at, std::iter::repeat_n(byte, n));
        }
        5 if len > 1 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let piece = data[from..from + n].to_vec();
            let to = rng.below(len);
            let end = (to + n).min(len);
            data.splice(to..end, piece);
        }
        6 => data.truncate(at),
        7 | 8 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())];
            if rng.chance(2) {
                data.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                data.splice(at..end, token.iter().copied());
            }
        }
        _ if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next_u64() as u8;
        }
        _ => data.push(rng.next_u64() as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_index_gives_the_same_input() {
        let seed = b"{\"traceEvents\":[{\"ph\":\"X\"}]}".to_vec();
        let make = |index| {
            let mut rng = input_rng(7, 1, index);
            let mut data = seed.clone();
            mutate(&mut rng, &mut data, &[b"\"ts\":"]);
            data
        };
        assert_eq!(make(42), make(42));
        let distinct: std::collections::HashSet<Vec<u8>> = (0..200).map(make).collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!((0..2000).all(|i| make(i).len() <= MAX_INPUT));
    }
}
