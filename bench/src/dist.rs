//! Randomness and key distributions (no external RNG: a benchmark needs speed and
//! reproducibility, not cryptographic quality).

/// SplitMix64: fast, well mixed, seedable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }
}

/// How keys are drawn from `0..n`.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipfian with exponent `theta` (0 < theta < 1 typical; 0.99 is YCSB's default): key 0
    /// is the hottest.
    Zipfian(f64),
    /// 0, 1, 2, ... wrapping at `n`.
    Sequential,
}

impl std::str::FromStr for KeyDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(KeyDist::Uniform),
            "sequential" => Ok(KeyDist::Sequential),
            "zipfian" => Ok(KeyDist::Zipfian(0.99)),
            _ => match s.strip_prefix("zipfian:") {
                Some(t) => match t.parse::<f64>() {
                    Ok(theta) if theta > 0.0 && theta != 1.0 && theta < 10.0 => {
                        Ok(KeyDist::Zipfian(theta))
                    }
                    _ => Err(format!(
                        "zipfian exponent must be a positive number other than 1, got {t:?}"
                    )),
                },
                None => Err(format!(
                    "unknown distribution {s:?} (uniform, zipfian[:theta], sequential)"
                )),
            },
        }
    }
}

/// Draws key indexes with one of the distributions.
#[derive(Debug, Clone)]
pub struct KeyGen {
    n: u64,
    kind: KeyDist,
    next_seq: u64,
    // Zipfian constants (Gray et al., as in YCSB).
    alpha: f64,
    zetan: f64,
    eta: f64,
    theta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl KeyGen {
    /// Keys in `0..n` (n >= 1), starting the sequential walk at `start`.
    pub fn new(n: u64, kind: KeyDist, start: u64) -> Self {
        let n = n.max(1);
        let (mut alpha, mut zetan, mut eta, mut theta) = (0.0, 0.0, 0.0, 0.0);
        if let KeyDist::Zipfian(t) = kind {
            theta = t;
            zetan = zeta(n, t);
            let zeta2 = zeta(2.min(n), t);
            alpha = 1.0 / (1.0 - t);
            eta = (1.0 - (2.0 / n as f64).powf(1.0 - t)) / (1.0 - zeta2 / zetan);
        }
        KeyGen {
            n,
            kind,
            next_seq: start % n,
            alpha,
            zetan,
            eta,
            theta,
        }
    }

    /// The next key index.
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        match self.kind {
            KeyDist::Uniform => rng.below(self.n),
            KeyDist::Sequential => {
                let k = self.next_seq;
                self.next_seq = (self.next_seq + 1) % self.n;
                k
            }
            KeyDist::Zipfian(_) => {
                let u = rng.next_f64();
                let uz = u * self.zetan;
                if uz < 1.0 {
                    return 0;
                }
                if uz < 1.0 + 0.5f64.powf(self.theta) {
                    return 1.min(self.n - 1);
                }
                let k = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
                k.min(self.n - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_covers_the_range_evenly() {
        let mut rng = Rng::new(1);
        let mut g = KeyGen::new(10, KeyDist::Uniform, 0);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[g.next(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn sequential_wraps() {
        let mut rng = Rng::new(1);
        let mut g = KeyGen::new(3, KeyDist::Sequential, 2);
        let got: Vec<u64> = (0..5).map(|_| g.next(&mut rng)).collect();
        assert_eq!(got, vec![2, 0, 1, 2, 0]);
    }

    #[test]
    fn zipfian_is_skewed_toward_low_keys() {
        let mut rng = Rng::new(7);
        let n = 1000;
        let mut g = KeyGen::new(n, KeyDist::Zipfian(0.99), 0);
        let mut counts = vec![0u32; n as usize];
        for _ in 0..200_000 {
            let k = g.next(&mut rng);
            assert!(k < n);
            counts[k as usize] += 1;
        }
        // Rank-1 share for theta 0.99 and n = 1000 is about 1/zeta(1000) ~ 13%.
        let top = counts[0] as f64 / 200_000.0;
        assert!((0.10..0.17).contains(&top), "top key share {top}");
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
    }

    #[test]
    fn distribution_names_parse() {
        assert_eq!("zipfian:0.8".parse::<KeyDist>(), Ok(KeyDist::Zipfian(0.8)));
        assert!("zipfian:1".parse::<KeyDist>().is_err());
        assert!("gaussian".parse::<KeyDist>().is_err());
    }
}
