//! Elementwise and row-wise tensor operations of the forward pass: RMS norm,
//! rotary position embeddings, activations, softmax. Plain loops over `f32`
//! rows that the compiler vectorises; the heavy matmuls live in `kernels`.

use kernels::ThreadPool;

/// `1 / sqrt(mean(x²) + eps)` rounded as GGML's CPU RMS norm: squares in
/// f32, summed in f64, the mean rounded to f32 before `eps` and the root.
/// (An f32 running sum moves the scale by a few ulps, which is enough to flip
/// roundings of the quantized activations downstream.)
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// `out = x / sqrt(mean(x²) + eps) * w`, for one row.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// RMS norm of every `w.len()`-wide row of `x` into the same row of `out`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], pool: &ThreadPool) {
    let d = w.len();
    pool.for_rows(out, d, MIN_PARALLEL_ROWS, &|i, o| {
        rms_norm(&x[i * d..(i + 1) * d], w, eps, o);
    });
}

/// Fewest rows a row-by-row pass shares over the pool's threads (fewer go
/// on the calling thread alone: waking a worker would cost more).
pub const MIN_PARALLEL_ROWS: usize = 4;

/// `gate = glu(gate) * up` for every `row_len`-element row, over the pool's
/// threads (`glu`: [`swiglu`] or [`geglu_tanh`], which act on one row as
/// GGML does).
pub fn glu_rows(
    glu: fn(&mut [f32], &[f32]),
    gate: &mut [f32],
    up: &[f32],
    row_len: usize,
    pool: &ThreadPool,
) {
    pool.for_rows(gate, row_len, MIN_PARALLEL_ROWS, &|i, g| {
        glu(g, &up[i * row_len..(i + 1) * row_len]);
    });
}

/// In-place RMS norm of every `w.len()`-sized chunk of `x` (per-head norms).
pub fn rms_norm_chunks(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    for chunk in x.chunks_exact_mut(n) {
        let scale = rms_scale(chunk, eps);
        for (v, &g) in chunk.iter_mut().zip(w) {
            *v = *v * scale * g;
        }
    }
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (x[2i], x[2i+1]) — GGML's "normal" mode, used by llama.
    Interleaved,
    /// Halves (x[i], x[i + d/2]) — GGML's "neox" mode, used by Gemma.
    Halves,
}

/// Rotary position embeddings for one RoPE base.
///
/// The angles follow GGML's CPU recurrence exactly — `θ₀ = pos`,
/// `θᵢ₊₁ = θᵢ · base^(-2/n_rot)` in single precision — and the rotation is
/// fused (`x0·cos − x1·sin` with one rounding of the first product), so that
/// queries and keys equal the reference's bit for bit; the last-bit
/// differences of a closed-form `pos · base^(-2i/n)` would otherwise flip
/// half-precision roundings in attention.
#[derive(Debug, Clone)]
pub struct Rope {
    style: RopeStyle,
    theta_scale: f32,
    n_rot: usize,
    head_dim: usize,
    /// Per-pair divisors of the angle (GGUF's `rope_freqs.weight`: Llama 3's
    /// and Phi-3's long-context scaling), as llama.cpp's `freq_factors`.
    freq_factors: Option<Vec<f32>>,
    scaling: RopeScaling,
}

/// Context-extension scaling of the angles, as GGML's `rope_yarn` applies
/// it: linear interpolation (`freq_scale`), YaRN's blend of interpolated and
/// extrapolated angles over the correction dimensions (`ext_factor` 1), and
/// a magnitude factor on cos and sin (`attn_factor`: YaRN's, or LongRoPE's
/// `rope.scaling.attn_factor`). [`RopeScaling::NONE`] leaves angles as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeScaling {
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    /// YaRN's first and last corrected pair dimensions
    /// ([`RopeScaling::yarn_corr_dims`]).
    pub corr_dims: [f32; 2],
}

impl RopeScaling {
    pub const NONE: RopeScaling = RopeScaling {
        freq_scale: 1.0,
        ext_factor: 0.0,
        attn_factor: 1.0,
        corr_dims: [0.0, 0.0],
    };

    /// GGML's `ggml_rope_yarn_corr_dims`: the dimensions whose wavelength
    /// spans `beta_fast` and `beta_slow` turns over `n_ctx_orig` positions.
    pub fn yarn_corr_dims(
        n_rot: usize,
        n_ctx_orig: usize,
        base: f32,
        beta_fast: f32,
        beta_slow: f32,
    ) -> [f32; 2] {
        let dim = |beta: f32| {
            n_rot as f32 * (n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = dim(beta_fast).floor();
        let end = dim(beta_slow).ceil();
        [start.max(0.0), end.min(n_rot as f32 - 1.0)]
    }

    /// One pair's (cos, sin) for its unscaled angle `theta_extrap`.
    fn cos_sin(&self, theta_extrap: f32, pair: usize) -> (f32, f32) {
        let theta_interp = self.freq_scale * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = self.attn_factor;
        if self.ext_factor != 0.0 {
            let [low, high] = self.corr_dims;
            let y = (pair as f32 - low) / (high - low).max(0.001);
            let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * self.ext_factor;
            theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0 + 0.1 * (1.0 / self.freq_scale).ln();
        }
        if mscale == 1.0 {
            (theta.cos(), theta.sin())
        } else {
            (theta.cos() * mscale, theta.sin() * mscale)
        }
    }
}

impl Rope {
    /// `n_rot` rotated dimensions per head (equal to the head size for our models).
    pub fn new(style: RopeStyle, base: f32, n_rot: usize, head_dim: usize) -> Self {
        Rope {
            style,
            theta_scale: base.powf(-2.0 / n_rot as f32),
            n_rot,
            head_dim,
            freq_factors: None,
            scaling: RopeScaling::NONE,
        }
    }

    /// Scales the angles as `scaling` says (YaRN, linear, LongRoPE's magnitude).
    pub fn with_scaling(mut self, scaling: RopeScaling) -> Self {
        self.scaling = scaling;
        self
    }

    /// Divides pair `i`'s angle by `factors[i]` (`n_rot / 2` of them).
    pub fn with_freq_factors(mut self, factors: Vec<f32>) -> Self {
        assert_eq!(factors.len(), self.n_rot / 2, "one factor per rotated pair");
        self.freq_factors = Some(factors);
        self
    }

    /// The (cos, sin) pairs for position `pos`, shared by every head, layer,
    /// query and key of that position.
    pub fn angles(&self, pos: usize) -> Vec<(f32, f32)> {
        let mut theta = pos as f32;
        (0..self.n_rot / 2)
            .map(|i| {
                let t = match &self.freq_factors {
                    Some(f) => theta / f[i],
                    None => theta,
                };
                let cs = if self.scaling == RopeScaling::NONE {
                    (t.cos(), t.sin())
                } else {
                    self.scaling.cos_sin(t, i)
                };
                theta *= self.theta_scale;
                cs
            })
            .collect()
    }

    /// Rotates every head in `x` (a row of `n_heads * head_dim`) by `angles`
    /// (from [`Rope::angles`] of the row's position).
    pub fn rotate(&self, x: &mut [f32], angles: &[(f32, f32)]) {
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(self.head_dim) {
            for (i, &(c, s)) in angles.iter().enumerate() {
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0.mul_add(c, -(x1 * s));
                head[b] = x0.mul_add(s, x1 * c);
            }
        }
    }

    /// Rotates every head in `x` for position `pos`.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        self.rotate(x, &self.angles(pos));
    }
}

/// `gate = silu(gate) * up`, elementwise (SwiGLU), with GGML's vectorised
/// `exp` so that the result equals llama.cpp's bit for bit
/// ([`kernels::glu`] says why that matters).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    kernels::glu::swiglu(gate, up);
}

/// GELU with the tanh approximation, rounded as GGML's table of it is built:
/// its C compiler fuses `1 + a·x·x` into one multiply-add, which moves some
/// table entries by one half-precision step.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (COEF * x).mul_add(x, 1.0)).tanh())
}

/// `half(gelu_tanh(x))` for every half-precision `x`, indexed by its bits.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = kernels::f16_to_f32(bits);
                kernels::f16_to_f32(kernels::f32_to_f16(gelu_tanh(x)))
            })
            .collect()
    })
}

/// `gate = gelu_tanh(gate) * up`, elementwise (GeGLU). As GGML's CPU backend
/// computes it: inside (-10, 10) the input is rounded to half precision and
/// the GELU value is too (a 65,536-entry table, built once); outside, GELU is
/// 0 or the identity.
pub fn geglu_tanh(gate: &mut [f32], up: &[f32]) {
    let table = gelu_table();
    let n = gate.len().min(up.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernels::Isa::detect() == kernels::Isa::Avx2 {
        done = n - n % 8;
        // SAFETY: AVX2, FMA and F16C were detected; both slices hold `done`
        // elements and the table all 65,536.
        unsafe { geglu_avx2::geglu(&mut gate[..done], &up[..done], table) };
    }
    for (g, &u) in gate[done..n].iter_mut().zip(&up[done..n]) {
        *g = geglu_one(*g, u, table);
    }
}

/// One element of [`geglu_tanh`].
fn geglu_one(x: f32, u: f32, table: &[f32]) -> f32 {
    if x <= -10.0 {
        // A plain zero, not `0 · up` (which keeps the sign of `up`).
        0.0
    } else if x >= 10.0 {
        x * u
    } else {
        table[usize::from(kernels::f32_to_f16(x))] * u
    }
}

/// [`geglu_tanh`] eight elements at a time: F16C rounds to half precision
/// (to nearest even, as the scalar conversion does), a gather reads the
/// table, and the two saturated ranges are blended in.
#[cfg(target_arch = "x86_64")]
mod geglu_avx2 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; `gate` and `up` must be equally
    /// long, a multiple of 8, and `table` must hold 65,536 entries.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn geglu(gate: &mut [f32], up: &[f32], table: &[f32]) {
        assert!(table.len() == 1 << 16 && gate.len() == up.len() && gate.len().is_multiple_of(8));
        let lo = _mm256_set1_ps(-10.0);
        let hi = _mm256_set1_ps(10.0);
        for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
            // SAFETY: eight floats each (chunks of 8).
            let (x, u) = unsafe { (_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr())) };
            let bits = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
            let idx = _mm256_cvtepu16_epi32(bits);
            // SAFETY: every index is below 65,536, the table's length.
            let t = unsafe { _mm256_i32gather_ps::<4>(table.as_ptr(), idx) };
            let inside = _mm256_mul_ps(t, u);
            let outside = _mm256_mul_ps(x, u);
            let big = _mm256_cmp_ps::<_CMP_GE_OQ>(x, hi);
            let small = _mm256_cmp_ps::<_CMP_LE_OQ>(x, lo);
            let v = _mm256_blendv_ps(inside, outside, big);
            let v = _mm256_andnot_ps(small, v);
            // SAFETY: eight writable floats.
            unsafe { _mm256_storeu_ps(g.as_mut_ptr(), v) };
        }
    }
}

/// `acc += x`, elementwise.
pub fn add_in_place(acc: &mut [f32], x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += b;
    }
}

/// In-place softmax of one row.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Dot product of two equal-length rows.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler keep a vector register each.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] += a[i * 8 + j] * b[i * 8 + j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// `acc += w * x`, elementwise.
pub fn axpy(acc: &mut [f32], w: f32, x: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a += w * b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms() {
        let x = [1.0, -2.0, 3.0, -4.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &[1.0; 4], 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-6);
    }

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        for style in [RopeStyle::Interleaved, RopeStyle::Halves] {
            let rope = Rope::new(style, 10000.0, 8, 8);
            let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.3 - 2.0).collect();
            let mut x = orig.clone();
            rope.apply(&mut x, 0);
            assert_eq!(x, orig);
            rope.apply(&mut x, 17);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3);
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn rope_relative_property() {
        // <R(p)q, R(p+d)k> depends only on d.
        let rope = Rope::new(RopeStyle::Halves, 10000.0, 8, 8);
        let q: Vec<f32> = (0..8).map(|i| (i as f32).sin()).collect();
        let k: Vec<f32> = (0..8).map(|i| (i as f32).cos()).collect();
        let score = |p: usize, d: usize| {
            let (mut a, mut b) = (q.clone(), k.clone());
            rope.apply(&mut a, p);
            rope.apply(&mut b, p + d);
            dot(&a, &b)
        };
        assert!((score(3, 5) - score(40, 5)).abs() < 1e-3);
    }

    #[test]
    fn rms_norm_accumulates_squares_in_f64_like_ggml() {
        // 1e-8 squares vanish in an f32 running sum next to 1.0.
        let mut x = vec![1e-4f32; 4097];
        x[0] = 1.0;
        let mut out = vec![0.0; x.len()];
        rms_norm(&x, &vec![1.0; x.len()], 1e-5, &mut out);
        let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
        let scale = 1.0f32 / ((sum / x.len() as f64) as f32 + 1e-5).sqrt();
        assert_eq!(out[0].to_bits(), scale.to_bits());
    }

    #[test]
    fn geglu_table_equals_rounding_twice() {
        let half = |x: f32| kernels::f16_to_f32(kernels::f32_to_f16(x));
        for i in -4000..4000 {
            let x = i as f32 * 0.0025 + 0.000_37;
            let mut g = [x];
            geglu_tanh(&mut g, &[1.0]);
            assert_eq!(
                g[0].to_bits(),
                half(gelu_tanh(half(x))).to_bits(),
                "x = {x}"
            );
        }
    }

    #[test]
    fn gelu_table_rounds_as_ggml_builds_it() {
        // llama.cpp b11434's table (dumped from its GeGLU output) holds
        // -0.045501709 for x = -1.99902344; an unfused `1 + a·x·x` gives the
        // next half-precision value up, -0.045471191.
        let x = kernels::f16_to_f32(0xbfff);
        let mut g = [x];
        geglu_tanh(&mut g, &[1.0]);
        assert_eq!(kernels::f32_to_f16(g[0]), 0xa9d3);
    }

    /// The vector path gives the element-by-element bits, across the table,
    /// both saturated ranges, half-precision subnormals and rounding ties.
    #[test]
    fn geglu_vector_path_equals_scalar_bits() {
        let table = gelu_table();
        let mut xs: Vec<f32> = (0..=u16::MAX)
            .map(kernels::f16_to_f32)
            .filter(|x| x.is_finite())
            .collect();
        // Midpoints between neighbouring halves (ties) and values in between.
        let n = xs.len();
        for i in 0..n - 1 {
            let (a, b) = (xs[i], xs[i + 1]);
            xs.push(a + (b - a) * 0.5);
            xs.push(a + (b - a) * 0.25);
        }
        xs.extend([-10.0, 10.0, -9.999, 9.999, -1e-8, 1e-8, -0.0, 0.0, 1e-30]);
        xs.truncate(xs.len() - xs.len() % 8);
        let up: Vec<f32> = (0..xs.len()).map(|i| 1.0 - (i % 7) as f32 * 0.37).collect();
        let mut got = xs.clone();
        geglu_tanh(&mut got, &up);
        for ((x, u), g) in xs.iter().zip(&up).zip(&got) {
            let want = geglu_one(*x, *u, table);
            assert_eq!(g.to_bits(), want.to_bits(), "x = {x:e}, up = {u}");
        }
    }

    #[test]
    fn geglu_saturates_outside_the_table_range() {
        let mut g = [-12.0f32, 12.0, 1.0];
        geglu_tanh(&mut g, &[-2.0, 2.0, 1.0]);
        // A positive zero, as GGML writes it, whatever the sign of `up`.
        assert_eq!(g[0].to_bits(), 0.0f32.to_bits());
        assert_eq!(g[1], 24.0);
        assert!((g[2] - gelu_tanh(1.0)).abs() < 1e-3);
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut x = [1000.0, 1001.0, -5.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
    }

    #[test]
    fn activations_match_definitions() {
        let mut g = [1.0f32];
        swiglu(&mut g, &[2.0]);
        assert!((g[0] - 2.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-6);
        let mut g = [0.5f32];
        geglu_tanh(&mut g, &[1.0]);
        // Half-precision table lookup: within an f16 step of the exact value.
        assert!((g[0] - 0.345_714).abs() < 5e-4);
    }
}
