//! SplitMix64 (Steele, Lea, Flood 2014): a small deterministic generator, one add and three
//! xor-shift-multiplies a number. The engine draws its backoff jitter from it (seeded by the
//! caller's randomness, so a test replays a history exactly); the simulator draws its fault
//! choices and the tests their random histories from it, one copy for all.

/// The generator; its state is the `u64` inside, the seed to start from.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
