//! The random streams of `bench_serving`, bit for bit: NumPy's legacy
//! `RandomState` (`np.random.seed`, `randint`, `exponential`, `gamma`) and
//! Python's `random` module (`random.seed`, `random`, `shuffle`,
//! `choices`), both over the 32-bit Mersenne Twister (MT19937).
//!
//! `bench_serving` seeds both with `--seed` and draws its lengths, token
//! offsets and arrival gaps from NumPy and its ShareGPT shuffle from
//! Python, so the same seed here gives the same requests and the same
//! gaps as there. The values in the tests were printed by NumPy 2.2.6 and
//! CPython 3.11 (see `tests/pyrand.rs`).

const N: usize = 624;
const M: usize = 397;

/// MT19937, the generator under both NumPy's legacy API and Python's
/// `random`.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

impl Mt19937 {
    /// `init_genrand`: NumPy's `RandomState.seed(int)`.
    pub fn from_u32(seed: u32) -> Mt19937 {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: N }
    }

    /// `init_by_array`: Python's `random.seed(int)` with the integer's
    /// 32-bit words, least significant first.
    pub fn from_key(key: &[u32]) -> Mt19937 {
        let mut mt = Mt19937::from_u32(19_650_218);
        let state = &mut mt.state;
        let (mut i, mut j) = (1usize, 0usize);
        let key_len = key.len().max(1);
        for _ in 0..N.max(key_len) {
            let prev = state[i - 1];
            state[i] = (state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key.get(j).copied().unwrap_or(0))
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                state[0] = state[N - 1];
                i = 1;
            }
            if j >= key_len {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = state[i - 1];
            state[i] = (state[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                state[0] = state[N - 1];
                i = 1;
            }
        }
        state[0] = 0x8000_0000;
        mt
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        const MATRIX_A: u32 = 0x9908_b0df;
        for i in 0..N {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % N] & LOWER);
            let mut next = self.state[(i + M) % N] ^ (y >> 1);
            if y & 1 == 1 {
                next ^= MATRIX_A;
            }
            self.state[i] = next;
        }
        self.pos = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) from 53 random bits: NumPy's `legacy_double` and
    /// Python's `random.random()`, which are the same.
    pub fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

/// NumPy's legacy `np.random` (a `RandomState`), as far as `bench_serving`
/// and vLLM's arrival process use it.
#[derive(Clone)]
pub struct NumpyRandom {
    mt: Mt19937,
    /// The second normal of the last polar Box-Muller pair.
    gauss: Option<f64>,
}

impl NumpyRandom {
    /// `np.random.seed(seed)`; NumPy refuses seeds of 2**32 and more.
    pub fn new(seed: u32) -> NumpyRandom {
        NumpyRandom {
            mt: Mt19937::from_u32(seed),
            gauss: None,
        }
    }

    /// `np.random.randint(low, high, size=n)`: `n` integers in
    /// `[low, high)`, drawn by masked rejection on 32-bit words (every
    /// range here is below 2**32). An empty range after `low` (`high ==
    /// low + 1`) draws nothing from the stream, as in NumPy.
    pub fn randint(&mut self, low: i64, high: i64, n: usize) -> Vec<i64> {
        assert!(high > low, "randint needs low < high");
        let range = (high - low - 1) as u64;
        assert!(range <= u32::MAX as u64, "randint range over 32 bits");
        if range == 0 {
            return vec![low; n];
        }
        let range = range as u32;
        let mask = u32::MAX >> range.leading_zeros();
        (0..n)
            .map(|_| {
                loop {
                    let value = self.mt.next_u32() & mask;
                    if value <= range {
                        break low + value as i64;
                    }
                }
            })
            .collect()
    }

    /// `np.random.random_sample()`.
    pub fn random(&mut self) -> f64 {
        self.mt.next_f64()
    }

    /// `legacy_standard_exponential`.
    fn standard_exponential(&mut self) -> f64 {
        -(1.0 - self.mt.next_f64()).ln()
    }

    /// `np.random.exponential(scale)`.
    pub fn exponential(&mut self, scale: f64) -> f64 {
        scale * self.standard_exponential()
    }

    /// `legacy_gauss`: the polar Box-Muller method, which makes normals in
    /// pairs and keeps the second for the next call.
    fn gauss(&mut self) -> f64 {
        if let Some(value) = self.gauss.take() {
            return value;
        }
        loop {
            let x1 = 2.0 * self.mt.next_f64() - 1.0;
            let x2 = 2.0 * self.mt.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `legacy_standard_gamma`: Marsaglia and Tsang's method for shapes of
    /// 1 and more, Johnk's rejection below 1, an exponential at exactly 1.
    fn standard_gamma(&mut self, shape: f64) -> f64 {
        if shape == 1.0 {
            return self.standard_exponential();
        }
        if shape == 0.0 {
            return 0.0;
        }
        if shape < 1.0 {
            loop {
                let u = self.mt.next_f64();
                let v = self.standard_exponential();
                if u <= 1.0 - shape {
                    let x = u.powf(1.0 / shape);
                    if x <= v {
                        return x;
                    }
                } else {
                    let y = -((1.0 - u) / shape).ln();
                    let x = (1.0 - shape + shape * y).powf(1.0 / shape);
                    if x <= v + y {
                        return x;
                    }
                }
            }
        }
        let b = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * b).sqrt();
        loop {
            let (x, v) = loop {
                let x = self.gauss();
                let v = 1.0 + c * x;
                if v > 0.0 {
                    break (x, v);
                }
            };
            let v = v * v * v;
            let u = self.mt.next_f64();
            if u < 1.0 - 0.0331 * (x * x) * (x * x) {
                return b * v;
            }
            if u.ln() < 0.5 * x * x + b * (1.0 - v + v.ln()) {
                return b * v;
            }
        }
    }

    /// `np.random.gamma(shape, scale)`.
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        scale * self.standard_gamma(shape)
    }
}

/// Python's `random` module (a `random.Random`).
#[derive(Clone)]
pub struct PyRandom {
    mt: Mt19937,
}

impl PyRandom {
    /// `random.seed(seed)` for an integer seed: the absolute value's 32-bit
    /// words, least significant first.
    pub fn new(seed: u64) -> PyRandom {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        let key: Vec<u32> = if high == 0 {
            vec![low]
        } else {
            vec![low, high]
        };
        PyRandom {
            mt: Mt19937::from_key(&key),
        }
    }

    /// `random.random()`.
    pub fn random(&mut self) -> f64 {
        self.mt.next_f64()
    }

    /// `random.getrandbits(k)` for `k` of 1 to 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.mt.next_u32() >> (32 - k)
    }

    /// `random._randbelow(n)`: rejection on the bit length of `n`.
    fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(items)`: Fisher-Yates from the end.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.randbelow(i as u32 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// `random.choices(population, k=k)` without weights: `k` independent
    /// picks, each `population[floor(random() * n)]`.
    pub fn choices<T: Copy>(&mut self, population: &[T], k: usize) -> Vec<T> {
        let n = population.len() as f64;
        (0..k)
            .map(|_| population[(self.random() * n).floor() as usize])
            .collect()
    }
}
