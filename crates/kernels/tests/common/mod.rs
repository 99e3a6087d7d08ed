//! Shared helpers for the kernel tests: a seeded generator and tolerances.
#![allow(dead_code)]

use kernels::{GgmlType, Isa, ThreadPool};

/// SplitMix64: small, seeded, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` values with a random per-row scale and occasional outliers, like activations.
    pub fn vector(&mut self, n: usize) -> Vec<f32> {
        let scale = 0.01 + 4.0 * (self.unit() + 1.0);
        (0..n)
            .map(|_| {
                let v = self.unit() * scale;
                if self.below(50) == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }
}

/// The instruction sets this CPU can run, up to the level
/// `PARLANCE_KERNELS` caps the kernels at (run the tests once per level to
/// check each: `PARLANCE_KERNELS=avx2 cargo test -p kernels`).
pub fn isas() -> Vec<Isa> {
    let cap = kernels::Level::active();
    println!("{}", kernels::Selection::get().describe());
    [Isa::Scalar, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_available() && (*i == Isa::Scalar || cap >= kernels::Level::Avx2))
        .collect()
}

/// Set in a child run of [`rerun_below_the_active_level`].
const CHILD_ENV: &str = "PARLANCE_KERNELS_TEST_CHILD";

/// The suite runs at the fastest level its CPU has, so on an AVX-512
/// machine the AVX2 and AVX-VNNI kernels (what most laptops run) would go
/// untested. This runs the calling test binary's other tests again in a
/// child process capped (`PARLANCE_KERNELS`) at each slower SIMD level this
/// CPU can run, and fails with the child's output if any of them fails.
/// `this_test` is the caller's name, skipped in the child.
pub fn rerun_below_the_active_level(this_test: &str) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let active = kernels::Level::active();
    let exe = std::env::current_exe().expect("the test binary");
    for level in kernels::Level::ALL {
        if level == kernels::Level::Scalar || level >= active || !level.is_available() {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .env(kernels::KERNELS_ENV, level.name())
            .env(CHILD_ENV, "1")
            .args(["--skip", this_test, "--test-threads", "2"])
            .output()
            .expect("run the test binary again");
        assert!(
            out.status.success(),
            "the kernel tests fail at {}:\n{}\n{}",
            level.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}: passed", level.name());
    }
}

pub fn pools() -> Vec<ThreadPool> {
    vec![ThreadPool::new(1), ThreadPool::new(2)]
}

/// Sum over k of |W[r][k] * x[b][k]| for every output: the scale that float
/// rounding differences are relative to.
pub fn abs_bound(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    batch: usize,
) -> Vec<f32> {
    let mut wf = vec![0.0; rows * cols];
    kernels::reference::dequantize_row(ty, w, &mut wf).expect("dequantize");
    let mut out = vec![0.0; rows * batch];
    for b in 0..batch {
        for r in 0..rows {
            out[b * rows + r] = (0..cols)
                .map(|k| (wf[r * cols + k] * x[b * cols + k]).abs())
                .sum::<f32>();
        }
    }
    out
}

/// Asserts |got - want| <= rel * bound + 1e-6 element-wise.
pub fn assert_close(got: &[f32], want: &[f32], bound: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        let tol = rel * b + 1e-6;
        assert!(
            (g - w).abs() <= tol,
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}
