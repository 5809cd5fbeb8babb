//! What to send: a SET:GET mix or a command template, with keys drawn from a distribution,
//! value sizes fixed or in a range, optional TTL on writes.

use crate::dist::{KeyDist, KeyGen, Rng};

/// A request kind, for per-command statistics.
pub type Kind = usize;

/// The workload every connection draws from.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Commands and their weights; each is a list of argument templates.
    pub commands: Vec<(String, Vec<Vec<u8>>, u32)>,
    /// Key space size.
    pub keyspace: u64,
    /// Key distribution.
    pub dist: KeyDist,
    /// Value size range (inclusive).
    pub value_size: (usize, usize),
}

/// Placeholder replaced by a key index (12 digits, as redis-benchmark does).
pub const RAND_INT: &[u8] = b"__rand_int__";
/// Placeholder replaced by a random value of the configured size.
pub const DATA: &[u8] = b"__data__";

impl Workload {
    /// SET:GET with `set` and `get` weights.
    pub fn set_get(
        set: u32,
        get: u32,
        keyspace: u64,
        dist: KeyDist,
        value_size: (usize, usize),
        ttl: Option<u64>,
    ) -> Self {
        let key = b"key:__rand_int__".to_vec();
        let mut commands = Vec::new();
        if set > 0 {
            let mut args = vec![b"SET".to_vec(), key.clone(), DATA.to_vec()];
            if let Some(t) = ttl {
                args.push(b"EX".to_vec());
                args.push(t.to_string().into_bytes());
            }
            commands.push(("SET".to_string(), args, set));
        }
        if get > 0 {
            commands.push(("GET".to_string(), vec![b"GET".to_vec(), key], get));
        }
        Workload {
            commands,
            keyspace,
            dist,
            value_size,
        }
    }

    /// One command template (e.g. `INCR counter:__rand_int__`).
    pub fn template(
        args: Vec<String>,
        keyspace: u64,
        dist: KeyDist,
        value_size: (usize, usize),
    ) -> Self {
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let args = args.into_iter().map(String::into_bytes).collect();
        Workload {
            commands: vec![(name, args, 1)],
            keyspace,
            dist,
            value_size,
        }
    }

    /// Names of the command kinds, indexed by [`Kind`].
    pub fn kind_names(&self) -> Vec<String> {
        self.commands.iter().map(|c| c.0.clone()).collect()
    }
}

/// Per-connection generator state.
#[derive(Debug, Clone)]
pub struct Generator {
    keys: KeyGen,
    rng: Rng,
    total_weight: u32,
    data: Vec<u8>,
}

impl Generator {
    /// A generator for `w`, seeded per connection.
    pub fn new(w: &Workload, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let data = (0..w.value_size.1.max(1))
            .map(|_| b'a' + (rng.below(26) as u8))
            .collect();
        Generator {
            keys: KeyGen::new(w.keyspace, w.dist.clone(), seed),
            rng,
            total_weight: w.commands.iter().map(|c| c.2).sum::<u32>().max(1),
            data,
        }
    }

    /// Append the next request to `out`; returns its kind.
    pub fn next(&mut self, w: &Workload, out: &mut Vec<u8>) -> Kind {
        let mut pick = self.rng.below(u64::from(self.total_weight)) as u32;
        let mut kind = 0;
        for (i, c) in w.commands.iter().enumerate() {
            if pick < c.2 {
                kind = i;
                break;
            }
            pick -= c.2;
        }
        self.encode(w, kind, out);
        kind
    }

    /// Append one request of command `kind` to `out` (keys and values drawn as usual).
    pub fn encode(&mut self, w: &Workload, kind: Kind, out: &mut Vec<u8>) {
        let key = self.keys.next(&mut self.rng);
        let (lo, hi) = w.value_size;
        let size = if hi > lo {
            lo + self.rng.below((hi - lo + 1) as u64) as usize
        } else {
            lo
        };
        let args = &w.commands[kind].1;
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        let mut scratch = Vec::new();
        for a in args {
            scratch.clear();
            expand(
                a,
                key,
                &self.data[..size.min(self.data.len())],
                &mut scratch,
            );
            out.extend_from_slice(format!("${}\r\n", scratch.len()).as_bytes());
            out.extend_from_slice(&scratch);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Replace `__rand_int__` with the 12-digit key index and `__data__` with the value.
fn expand(template: &[u8], key: u64, data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < template.len() {
        if template[i..].starts_with(RAND_INT) {
            out.extend_from_slice(format!("{key:012}").as_bytes());
            i += RAND_INT.len();
        } else if template[i..].starts_with(DATA) {
            out.extend_from_slice(data);
            i += DATA.len();
        } else {
            out.push(template[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(buf: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut args = Vec::new();
        while pos < buf.len() {
            let n = coreshard_protocol::parse_request(&buf[pos..], &Default::default(), &mut args)
                .unwrap()
                .unwrap();
            out.push(args.iter().map(|a| a.to_vec()).collect());
            pos += n;
        }
        out
    }

    #[test]
    fn set_get_mix_follows_the_ratio() {
        let w = Workload::set_get(1, 3, 100, KeyDist::Uniform, (8, 8), Some(30));
        let mut g = Generator::new(&w, 1);
        let mut out = Vec::new();
        let kinds: Vec<Kind> = (0..4000).map(|_| g.next(&w, &mut out)).collect();
        let sets = kinds.iter().filter(|&&k| k == 0).count();
        assert!((800..1200).contains(&sets), "{sets}");
        let reqs = parse_all(&out);
        assert_eq!(reqs.len(), 4000);
        let set = reqs.iter().find(|r| r[0] == b"SET").unwrap();
        assert_eq!(set[1].len(), 16);
        assert_eq!(set[2].len(), 8);
        assert_eq!(&set[3..], &[b"EX".to_vec(), b"30".to_vec()]);
    }

    #[test]
    fn templates_expand_keys_and_data() {
        let w = Workload::template(
            vec!["INCR".into(), "counter:__rand_int__".into()],
            5,
            KeyDist::Sequential,
            (3, 3),
        );
        let mut g = Generator::new(&w, 0);
        let mut out = Vec::new();
        g.next(&w, &mut out);
        g.next(&w, &mut out);
        let reqs = parse_all(&out);
        assert_eq!(
            reqs[0],
            vec![b"INCR".to_vec(), b"counter:000000000000".to_vec()]
        );
        assert_eq!(reqs[1][1], b"counter:000000000001".to_vec());
        assert_eq!(w.kind_names(), vec!["INCR"]);
    }

    #[test]
    fn value_sizes_stay_in_range() {
        let w = Workload::set_get(1, 0, 10, KeyDist::Uniform, (4, 9), None);
        let mut g = Generator::new(&w, 3);
        let mut out = Vec::new();
        for _ in 0..200 {
            g.next(&w, &mut out);
        }
        for r in parse_all(&out) {
            assert!((4..=9).contains(&r[2].len()));
        }
    }
}
