//! Times the matmul kernels on SmolLM2-135M's and Gemma 3 270M's shapes
//! (random weights).
//!
//! `cargo run --release -p kernels --example matmul_bench [threads [shape]]`
//! (`shape`: a substring of the shape names to time, or several separated
//! by `|` (a shape matching any is timed); `BATCHES=1,16,512`
//! sets the batch sizes, 1, 16 and 64 by default) prints, per shape and batch, microseconds per call, GFLOP/s and weight
//! GB/s, then a whole decode step's worth of matmuls (30 layers + output).
//!
//! `CLOCK=cpu` times with the process's CPU time instead of the wall clock
//! (Linux): with one thread, time the machine's other processes took from
//! this one is not counted, so kernels can be compared on a loaded machine
//! (caches shared with them still slow it somewhat).

use kernels::{matmul_with, quantize_row, GgmlType, Isa, QMatrix, ThreadPool};
use std::time::{Duration, Instant};

struct Shape {
    name: &'static str,
    ty: GgmlType,
    rows: usize,
    cols: usize,
}

const SHAPES: [Shape; 11] = [
    Shape {
        name: "attn_q/o 576x576",
        ty: GgmlType::Q4_1,
        rows: 576,
        cols: 576,
    },
    Shape {
        name: "attn_k/v 192x576",
        ty: GgmlType::Q4_1,
        rows: 192,
        cols: 576,
    },
    Shape {
        name: "ffn_up 1536x576",
        ty: GgmlType::Q4_1,
        rows: 1536,
        cols: 576,
    },
    Shape {
        name: "ffn_down 576x1536",
        ty: GgmlType::Q4_1,
        rows: 576,
        cols: 1536,
    },
    Shape {
        name: "output 49152x576",
        ty: GgmlType::Q8_0,
        rows: 49152,
        cols: 576,
    },
    Shape {
        name: "q4_k 576x1536",
        ty: GgmlType::Q4_K,
        rows: 576,
        cols: 1536,
    },
    Shape {
        name: "gemma up 2048x640",
        ty: GgmlType::Q5_0,
        rows: 2048,
        cols: 640,
    },
    Shape {
        name: "gemma down 640x2048",
        ty: GgmlType::Q4_K,
        rows: 640,
        cols: 2048,
    },
    Shape {
        name: "gemma q6_k 640x2048",
        ty: GgmlType::Q6_K,
        rows: 640,
        cols: 2048,
    },
    Shape {
        name: "gemma out 262144x640",
        ty: GgmlType::Q8_0,
        rows: 262144,
        cols: 640,
    },
    // The head's format and width, few enough rows to stay in the L2 cache:
    // the kernel's compute speed without waiting on memory.
    Shape {
        name: "gemma out-cached 1024x640",
        ty: GgmlType::Q8_0,
        rows: 1024,
        cols: 640,
    },
];

fn random(n: usize, seed: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

fn weights(s: &Shape, seed: &mut u64) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..s.rows {
        w.extend(quantize_row(s.ty, &random(s.cols, seed)).unwrap_or_default());
    }
    w
}

/// The clock `CLOCK` names: the wall clock, or (`cpu`) this process's CPU time.
fn now() -> Duration {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *CPU.get_or_init(|| std::env::var("CLOCK").is_ok_and(|v| v == "cpu")) {
        cpu_time()
    } else {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// This process's CPU time (all its threads).
#[cfg(target_os = "linux")]
fn cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on
    // 64-bit Linux); the call only writes it.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.sec as u64, ts.nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn cpu_time() -> Duration {
    panic!("CLOCK=cpu needs Linux")
}

/// Best of five mean times per call (each over ~60 ms of the clock), to
/// shrug off noise from other processes.
fn time(mut f: impl FnMut()) -> Duration {
    f();
    (0..5)
        .map(|_| {
            let t = now();
            let mut n = 0u32;
            while now() - t < Duration::from_millis(60) {
                f();
                n += 1;
            }
            (now() - t) / n
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let pool = ThreadPool::new(threads);
    let isa = Isa::detect();
    println!(
        "{}, {threads} threads",
        kernels::Selection::get().describe()
    );
    let t = time(|| pool.run(threads, &|_| {}));
    println!(
        "pool.run with {threads} empty tasks: {:.2} us",
        t.as_secs_f64() * 1e6
    );
    let mut seed = 42u64;
    // Optional: a substring of the shapes to time, and the batch sizes.
    let only = std::env::args().nth(2).unwrap_or_default();
    let wanted = |name: &str| only.split('|').any(|part| name.contains(part));
    // Weights only for the shapes to time (making the 262k-row head's takes
    // seconds).
    let mats: Vec<(&Shape, Vec<u8>)> = SHAPES
        .iter()
        .map(|s| {
            let w = if wanted(s.name) {
                weights(s, &mut seed)
            } else {
                Vec::new()
            };
            (s, w)
        })
        .collect();
    let batches: Vec<usize> = std::env::var("BATCHES")
        .ok()
        .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64]);
    for (s, w) in mats.iter().filter(|(s, _)| wanted(s.name)) {
        let Ok(m) = QMatrix::new(s.ty, w, s.rows, s.cols) else {
            continue;
        };
        for &batch in &batches {
            let x = random(batch * s.cols, &mut seed);
            let mut out = vec![0.0; batch * s.rows];
            let t = time(|| matmul_with(&m, &x, batch, &mut out, &pool, isa));
            let flops = 2.0 * (s.rows * s.cols * batch) as f64 / t.as_secs_f64() / 1e9;
            let gbs = w.len() as f64 / t.as_secs_f64() / 1e9;
            println!(
                "{:<20} {:>5} batch {:>3}: {:>9.1} us  {:>7.1} GFLOP/s  {:>6.2} GB/s weights",
                s.name,
                s.ty.name(),
                batch,
                t.as_secs_f64() * 1e6,
                flops,
                gbs
            );
        }
    }
    if !only.is_empty() {
        return;
    }
    // One decode step: per layer q, k, v, o, gate, up, down; then the output
    // head. Every layer gets its own copy of the weights, as in a real model,
    // so they stream from memory rather than sit in the caches.
    let layer_bytes: Vec<&[u8]> = [0usize, 1, 1, 0, 2, 2, 3]
        .iter()
        .map(|&i| mats[i].1.as_slice())
        .collect();
    let shapes: Vec<&Shape> = [0usize, 1, 1, 0, 2, 2, 3]
        .iter()
        .map(|&i| mats[i].0)
        .collect();
    let copies: Vec<Vec<Vec<u8>>> = (0..30)
        .map(|_| layer_bytes.iter().map(|b| b.to_vec()).collect())
        .collect();
    let Ok(head) = QMatrix::new(mats[4].0.ty, &mats[4].1, mats[4].0.rows, mats[4].0.cols) else {
        return;
    };
    let layers: Vec<Vec<QMatrix<'_>>> = copies
        .iter()
        .map(|l| {
            l.iter()
                .zip(&shapes)
                .filter_map(|(b, s)| QMatrix::new(s.ty, b, s.rows, s.cols).ok())
                .collect()
        })
        .collect();
    let x576 = random(576, &mut seed);
    let x1536 = random(1536, &mut seed);
    let mut o = vec![0.0; 49152];
    let t = time(|| {
        for layer in &layers {
            for mat in layer {
                let x = if mat.cols() == 576 { &x576 } else { &x1536 };
                matmul_with(mat, x, 1, &mut o[..mat.rows()], &pool, isa);
            }
        }
        matmul_with(&head, &x576, 1, &mut o, &pool, isa);
    });
    let bytes: usize = copies.iter().flatten().map(Vec::len).sum::<usize>() + mats[4].1.len();
    println!(
        "decode step (211 matmuls, {:.1} MB of weights): {:.2} ms -> {:.0} tok/s if matmuls were all, {:.1} GB/s",
        bytes as f64 / 1e6,
        t.as_secs_f64() * 1e3,
        1.0 / t.as_secs_f64(),
        bytes as f64 / t.as_secs_f64() / 1e9
    );
}
