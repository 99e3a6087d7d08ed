//! Attention against a plain reference: scores, softmax, weighted sum.

use super::*;
use kernels::RowOrder;

/// A small deterministic generator of values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * amp).collect()
    }
}

/// A sequence in the test batch: `cached` positions already in the cache,
/// then `new` rows in this pass.
struct Seq {
    id: SeqId,
    cached: usize,
    new: usize,
}

struct Case {
    shape: AttnShape,
    seqs: Vec<Seq>,
}

/// The batch (rows of all sequences interleaved), its queries, and a cache
/// holding random keys and values for every position.
fn setup(case: &Case, rng: &mut Rng) -> (Vec<BatchRow>, Vec<f32>, KvCache) {
    let s = case.shape;
    let kv_dim = s.n_kv_head * s.head_dim;
    let total: usize = case.seqs.iter().map(|q| q.cached + q.new).sum();
    let mut kv = KvCache::new(1, kv_dim, 16, total + 16 * case.seqs.len());
    for q in &case.seqs {
        kv.reserve(q.id, q.cached + q.new).unwrap();
        for p in 0..q.cached + q.new {
            // Keys scaled up so that the softmax is far from uniform.
            kv.write(0, q.id, p, &rng.vec(kv_dim, 3.0), &rng.vec(kv_dim, 1.0))
                .unwrap();
        }
    }
    let mut rows = Vec::new();
    let longest = case.seqs.iter().map(|q| q.new).max().unwrap_or(0);
    for i in 0..longest {
        for q in case.seqs.iter().filter(|q| i < q.new) {
            rows.push(BatchRow {
                seq: q.id,
                pos: q.cached + i,
                token: 0,
                want_logits: false,
                order: RowOrder {
                    f32_attention: q.new >= kernels::REFERENCE_F32_ATTENTION_ROWS,
                    ..RowOrder::default()
                },
            });
        }
    }
    let q = rng.vec(rows.len() * s.n_head * s.head_dim, 1.0);
    (rows, q, kv)
}

/// Attention of one (row, head) computed the obvious way, in f64.
fn reference(row: BatchRow, qh: &[f32], head: usize, kv: &KvCache, s: AttnShape) -> Vec<f64> {
    let view = kv.view(0, row.seq).unwrap();
    let off = head / (s.n_head / s.n_kv_head) * s.head_dim;
    let keys = s.keys(row.pos);
    let scores: Vec<f64> = keys
        .clone()
        .map(|p| {
            let k = &view.key(p)[off..off + s.head_dim];
            qh.iter()
                .zip(k)
                .map(|(&a, &b)| f64::from(a) * f64::from(kernels::f16_to_f32(b)))
                .sum::<f64>()
                * f64::from(s.scale)
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0f64; s.head_dim];
    for (w, p) in weights.iter().zip(keys) {
        let v = &view.value(p)[off..off + s.head_dim];
        for (o, &x) in out.iter_mut().zip(v) {
            *o += w / total * f64::from(kernels::f16_to_f32(x));
        }
    }
    out
}

/// One (row, head) as llama.cpp's tiled flash attention
/// (`ggml_compute_forward_flash_attn_ext_tiled`, AVX-512 build) computes it,
/// written out one key at a time: 64-key tiles from position 0, each score
/// one fused chain, GGML's `exp`, 16-lane tree sums added in double.
fn ggml_tiled(
    qh: &[f32],
    view: &crate::kv::SeqView,
    off: usize,
    keys: Range<usize>,
    s: AttnShape,
) -> Vec<f32> {
    let d = s.head_dim;
    let (mut m, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    let mut acc = vec![0.0f32; d];
    for t in (0..keys.end).step_by(64) {
        let mut kq = [f32::NEG_INFINITY; 64];
        let span = t.max(keys.start)..(t + 64).min(keys.end);
        for p in span.clone() {
            let k = &view.key(p)[off..off + d];
            let x = qh
                .iter()
                .zip(k)
                .fold(0.0f32, |x, (&a, &b)| a.mul_add(kernels::f16_to_f32(b), x));
            kq[p - t] = x * s.scale;
        }
        let tile_max = kq.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if tile_max == f32::NEG_INFINITY {
            continue;
        }
        let m_new = m.max(tile_max);
        if m_new > m {
            let ms = (m - m_new).exp();
            acc.iter_mut().for_each(|a| *a *= ms);
            sum *= ms;
        }
        m = m_new;
        let w: Vec<f32> = kq
            .iter()
            .map(|&x| kernels::glu::exp_approx(x - m_new))
            .collect();
        let mut total = 0.0f64;
        for g in w.chunks(16) {
            let mut v = g.to_vec();
            let mut n = 16;
            while n > 1 {
                n /= 2;
                for j in 0..n {
                    v[j] += v[j + n];
                }
            }
            total += f64::from(v[0]);
        }
        sum = (f64::from(sum) + total) as f32;
        for p in span {
            let v = &view.value(p)[off..off + d];
            for (a, &x) in acc.iter_mut().zip(v) {
                *a = w[p - t].mul_add(kernels::f16_to_f32(x), *a);
            }
        }
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    acc.iter().map(|a| a * inv).collect()
}

fn check(case: &Case, seed: u64) {
    let s = case.shape;
    let mut rng = Rng(seed);
    let (rows, q, kv) = setup(case, &mut rng);
    let q_dim = s.n_head * s.head_dim;
    let mut out = vec![f32::NAN; rows.len() * q_dim];
    let pool = ThreadPool::new(2);
    attention(&rows, &q, &kv, 0, s, &pool, &mut out).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let wide = row.order.f32_attention;
        for h in 0..s.n_head {
            let at = r * q_dim + h * s.head_dim;
            let (qh, got) = (&q[at..at + s.head_dim], &out[at..at + s.head_dim]);
            if wide {
                // llama.cpp's tiled kernel, bit for bit.
                let view = kv.view(0, row.seq).unwrap();
                let off = h / (s.n_head / s.n_kv_head) * s.head_dim;
                let ggml = ggml_tiled(qh, &view, off, s.keys(row.pos), s);
                assert_eq!(got, &ggml[..], "row {r} head {h}: not GGML's tiled sums");
                let want = reference(*row, qh, h, &kv, s);
                let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                for (g, w) in got.iter().zip(&want) {
                    let err = (f64::from(*g) - w).abs() / scale;
                    assert!(
                        err <= 1e-5,
                        "row {r} (seq {} pos {}) head {h}: {g} vs {w} (rel {err:e})",
                        row.seq,
                        row.pos
                    );
                }
            } else {
                // Short sequences keep the half-precision path, bit for bit.
                let view = kv.view(0, row.seq).unwrap();
                let head = HeadView {
                    view: &view,
                    off: h / (s.n_head / s.n_kv_head) * s.head_dim,
                    len: s.head_dim,
                };
                let mut want = vec![0.0f32; s.head_dim];
                attend_f16(qh, &head, s.keys(row.pos), s.scale, &mut want);
                assert_eq!(got, &want[..], "row {r} head {h} left the f16 path");
            }
        }
    }
}

fn shape(head_dim: usize, n_head: usize, n_kv_head: usize, window: Option<usize>) -> AttnShape {
    AttnShape {
        n_head,
        n_kv_head,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        window,
    }
}

fn seq(id: SeqId, cached: usize, new: usize) -> Seq {
    Seq { id, cached, new }
}

#[test]
fn long_passes_equal_reference_attention() {
    let cases = [
        // SmolLM2-like: head 64, groups of 3, two long prompts in one batch,
        // one of them continuing cached context.
        Case {
            shape: shape(64, 9, 3, None),
            seqs: vec![seq(1, 0, 70), seq(2, 5, 100)],
        },
        // Gemma-like: head 256, four heads on one KV head, sliding windows.
        Case {
            shape: shape(256, 4, 1, Some(37)),
            seqs: vec![seq(1, 0, 130)],
        },
        Case {
            shape: shape(256, 4, 1, Some(512)),
            seqs: vec![seq(7, 20, 64), seq(8, 0, 65)],
        },
        // One query head per KV head, a window smaller than a key block.
        Case {
            shape: shape(32, 4, 4, Some(5)),
            seqs: vec![seq(3, 40, 80)],
        },
        // A head size the SIMD loops do not take (the portable path).
        Case {
            shape: shape(12, 4, 2, None),
            seqs: vec![seq(1, 3, 64), seq(2, 0, 90)],
        },
        // Head size 8 with 16 heads on 2 KV heads (many rows per tile).
        Case {
            shape: shape(8, 16, 2, Some(100)),
            seqs: vec![seq(4, 0, 200)],
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        check(case, 0x9E37_79B9_7F4A_7C15 ^ i as u64);
    }
}

#[test]
fn short_sequences_beside_long_ones_keep_the_f16_path() {
    let case = Case {
        shape: shape(64, 9, 3, None),
        seqs: vec![seq(1, 0, 66), seq(2, 10, 5), seq(3, 0, 1)],
    };
    check(&case, 42);
}

#[test]
fn plan_covers_every_row_and_head_once() {
    let s = shape(64, 9, 3, None);
    let mut rows = Vec::new();
    for pos in 0..100 {
        rows.push(BatchRow {
            seq: 1,
            pos,
            token: 0,
            want_logits: false,
            order: RowOrder {
                f32_attention: true,
                ..RowOrder::default()
            },
        });
        if pos < 3 {
            rows.push(BatchRow {
                seq: 2,
                pos,
                token: 0,
                want_logits: false,
                order: RowOrder::default(),
            });
        }
    }
    let (jobs, order) = plan(&rows, s);
    let mut seen = vec![0u32; rows.len() * s.n_head];
    for job in jobs {
        match job {
            Job::Narrow { row, head } => seen[row * s.n_head + head] += 1,
            Job::Tile {
                rows: span,
                kv_head,
            } => {
                for &r in &order[span] {
                    for h in kv_head * 3..kv_head * 3 + 3 {
                        seen[r * s.n_head + h] += 1;
                    }
                }
            }
        }
    }
    assert!(seen.iter().all(|&n| n == 1));
}

/// The vector body of the half-precision path gives the portable body's bits
/// over the cache's own views, and both keep rounding as the full f16
/// conversion does.
#[test]
fn f16_path_is_bit_identical_across_bodies() {
    let mut rng = Rng(0x5eed);
    let (hd, n) = (64, 300);
    let mut kv = KvCache::new(1, hd, 16, n);
    kv.reserve(1, n).unwrap();
    for p in 0..n {
        kv.write(0, 1, p, &rng.vec(hd, 3.0), &rng.vec(hd, 1.0))
            .unwrap();
    }
    let view = kv.view(0, 1).unwrap();
    let head = HeadView {
        view: &view,
        off: 0,
        len: hd,
    };
    let round = |x: f32| kernels::f16_to_f32(kernels::f32_to_f16(x));
    for trial in 0..8 {
        let q = rng.vec(hd, 1.0);
        let keys = trial * 7..n - trial;
        let (mut fast, mut plain) = (vec![0.0f32; hd], vec![0.0f32; hd]);
        attend_f16(&q, &head, keys.clone(), 0.125, &mut fast);
        kernels::attn::attend_f16_with(
            kernels::Isa::Scalar,
            &q,
            &head,
            keys.clone(),
            0.125,
            &mut plain,
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&plain), "trial {trial}");
        // The scalar form of the same recurrence, with the full conversion.
        let q16: Vec<f32> = q.iter().map(|&x| round(x)).collect();
        let (mut sum, mut max, mut o) = (0.0f32, f32::NEG_INFINITY, vec![0.0f32; hd]);
        for p in keys {
            let key: Vec<f32> = head
                .key(p)
                .iter()
                .map(|&h| kernels::f16_to_f32(h))
                .collect();
            let s = kernels::attn::dot_f16_ordered(&q16, &key) * 0.125;
            let (mut ms, mut vs) = (1.0f32, 1.0f32);
            if s > max {
                ms = (max - s).exp();
                max = s;
                o.iter_mut().for_each(|x| *x = round(*x * ms));
            } else {
                vs = (s - max).exp();
            }
            for (x, &v) in o.iter_mut().zip(head.value(p)) {
                *x = round(kernels::f16_to_f32(v).mul_add(vs, *x));
            }
            sum = sum.mul_add(ms, vs);
        }
        o.iter_mut().for_each(|x| *x *= 1.0 / sum);
        assert_eq!(bits(&fast), bits(&o), "trial {trial}");
    }
}
