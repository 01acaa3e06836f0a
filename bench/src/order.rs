//! The order of the lanes within one round. Work the kernel finishes after a container
//! is gone (network namespace teardown, cgroup offlining) lands on whichever cycle runs
//! next, so a fixed order would bill one runtime for another's clean-up; each round is
//! shuffled instead (xorshift64*, seeded, so a run can be repeated).

/// A seeded source of round orders.
#[derive(Debug, Clone)]
pub struct Shuffler(u64);

impl Shuffler {
    /// A shuffler from `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A uniformly shuffled order of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
            let j = usize::try_from(self.next() % bound).unwrap_or(0);
            order.swap(i, j);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_vary() {
        let mut s = Shuffler::new(42);
        let mut firsts = [0usize; 6];
        for _ in 0..600 {
            let mut p = s.permutation(6);
            firsts[p[0]] += 1;
            p.sort_unstable();
            assert_eq!(p, (0..6).collect::<Vec<_>>());
        }
        assert!(
            firsts.iter().all(|&c| c > 50),
            "lane first counts {firsts:?}"
        );
    }

    #[test]
    fn same_seed_same_orders() {
        let (mut a, mut b) = (Shuffler::new(7), Shuffler::new(7));
        for _ in 0..10 {
            assert_eq!(a.permutation(5), b.permutation(5));
        }
        assert_eq!(Shuffler::new(0).permutation(1), vec![0]);
        assert!(Shuffler::new(3).permutation(0).is_empty());
    }
}
