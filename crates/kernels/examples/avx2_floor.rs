//! How many AVX2 vector instructions this CPU retires per cycle in the mix
//! of the 32-element block formats' inner loop (not a test).
//!
//! Per (weight block, activation row) the AVX2 dot product of a Q8_0 or
//! Q5_0 block, in llama.cpp's order that our kernels keep bit for bit, is
//! five vector instructions: `vpsignb` (the weight's signs onto the
//! activation), `vpmaddubsw`, `vpmaddwd` (pairs to 32-bit lanes),
//! `vcvtdq2ps` and `vfmadd231ps` by the block's scale. This times that mix
//! and its parts on independent registers (throughput, not latency) and
//! prints cycles per instruction, with the clock estimated by a chain of
//! dependent integer adds (one a cycle). Each group's first instruction
//! reads fresh operands, as a kernel's loads would, so no chain runs from
//! one iteration to the next but the accumulators'. Two bit-exact
//! alternatives are timed beside it: the same lanes from 16-bit operands
//! (`vpmaddwd` twice, no sign step) and, for formats whose weights fit in
//! 5 bits, unsigned weights with the offset taken back per lane
//! (`vpsubd` instead of `vpsignb`). The mix's time per group is the floor
//! of a batch kernel that keeps the reference's bits: what a kernel
//! measures above it goes to loads, unpacking and scales.
//!
//! ```text
//! cargo run --release -p kernels --example avx2_floor
//! ```
//! Times are the thread's CPU time, so a loaded machine slows it less.

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::arch::asm;
    use std::time::Duration;

    fn cpu_time() -> Duration {
        let mut ts = libc_timespec { sec: 0, nsec: 0 };
        // SAFETY: clock_gettime writes one timespec.
        unsafe {
            clock_gettime(3 /* CLOCK_THREAD_CPUTIME_ID */, &mut ts)
        };
        Duration::new(ts.sec as u64, ts.nsec as u32)
    }
    #[repr(C)]
    struct libc_timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut libc_timespec) -> i32;
    }

    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        println!("this CPU has no AVX2 and FMA");
        return;
    }
    const N: u64 = 50_000_000;

    // The clock: one dependent add a cycle.
    let t = cpu_time();
    let mut x = 0u64;
    for _ in 0..N * 4 {
        // SAFETY: an add on a register.
        unsafe { asm!("add {0}, 1", inout(reg) x, options(nomem, nostack)) };
    }
    std::hint::black_box(x);
    let ghz = (N * 4) as f64 / (cpu_time() - t).as_secs_f64() / 1e9;
    println!("clock ≈ {ghz:.2} GHz (dependent adds)");

    macro_rules! time_mix {
        ($name:literal, $ops:literal, $body:literal) => {{
            let t = cpu_time();
            for _ in 0..N {
                // SAFETY: register-only AVX2/FMA instructions (checked
                // above); every register used is declared clobbered.
                unsafe {
                    asm!($body,
                        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                        out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                        options(nomem, nostack));
                }
            }
            let cycles = (cpu_time() - t).as_secs_f64() * ghz * 1e9 / N as f64;
            println!("{:<44} {:5.2} cycles / {:>2} instructions = {:.2} per instruction",
                $name, cycles, $ops, cycles / $ops as f64);
        }};
    }
    time_mix!("8 vpmaddubsw", 8,
        "vpmaddubsw ymm0, ymm0, ymm15\nvpmaddubsw ymm1, ymm1, ymm15\nvpmaddubsw ymm2, ymm2, ymm15\nvpmaddubsw ymm3, ymm3, ymm15\nvpmaddubsw ymm4, ymm4, ymm15\nvpmaddubsw ymm5, ymm5, ymm15\nvpmaddubsw ymm6, ymm6, ymm15\nvpmaddubsw ymm7, ymm7, ymm15");
    time_mix!("8 vpsignb", 8,
        "vpsignb ymm0, ymm0, ymm15\nvpsignb ymm1, ymm1, ymm15\nvpsignb ymm2, ymm2, ymm15\nvpsignb ymm3, ymm3, ymm15\nvpsignb ymm4, ymm4, ymm15\nvpsignb ymm5, ymm5, ymm15\nvpsignb ymm6, ymm6, ymm15\nvpsignb ymm7, ymm7, ymm15");
    time_mix!("8 vfmadd231ps", 8,
        "vfmadd231ps ymm0, ymm14, ymm15\nvfmadd231ps ymm1, ymm14, ymm15\nvfmadd231ps ymm2, ymm14, ymm15\nvfmadd231ps ymm3, ymm14, ymm15\nvfmadd231ps ymm4, ymm14, ymm15\nvfmadd231ps ymm5, ymm14, ymm15\nvfmadd231ps ymm6, ymm14, ymm15\nvfmadd231ps ymm7, ymm14, ymm15");
    time_mix!("8 vpaddd", 8,
        "vpaddd ymm0, ymm0, ymm15\nvpaddd ymm1, ymm1, ymm15\nvpaddd ymm2, ymm2, ymm15\nvpaddd ymm3, ymm3, ymm15\nvpaddd ymm4, ymm4, ymm15\nvpaddd ymm5, ymm5, ymm15\nvpaddd ymm6, ymm6, ymm15\nvpaddd ymm7, ymm7, ymm15");
    time_mix!("block dot ×4: sign, maddubs, madd, cvt, fma", 20,
        "vpsignb ymm0, ymm12, ymm15\nvpmaddubsw ymm0, ymm0, ymm15\nvpmaddwd ymm0, ymm0, ymm15\nvcvtdq2ps ymm4, ymm0\nvfmadd231ps ymm8, ymm4, ymm14\n\
         vpsignb ymm1, ymm12, ymm15\nvpmaddubsw ymm1, ymm1, ymm15\nvpmaddwd ymm1, ymm1, ymm15\nvcvtdq2ps ymm5, ymm1\nvfmadd231ps ymm9, ymm5, ymm14\n\
         vpsignb ymm2, ymm12, ymm15\nvpmaddubsw ymm2, ymm2, ymm15\nvpmaddwd ymm2, ymm2, ymm15\nvcvtdq2ps ymm6, ymm2\nvfmadd231ps ymm10, ymm6, ymm14\n\
         vpsignb ymm3, ymm12, ymm15\nvpmaddubsw ymm3, ymm3, ymm15\nvpmaddwd ymm3, ymm3, ymm15\nvcvtdq2ps ymm7, ymm3\nvfmadd231ps ymm11, ymm7, ymm14");
    time_mix!("block dot ×4, unsigned: maddubs, madd, sub, cvt, fma", 20,
        "vpmaddubsw ymm0, ymm12, ymm15\nvpmaddwd ymm0, ymm0, ymm15\nvpsubd ymm0, ymm0, ymm13\nvcvtdq2ps ymm4, ymm0\nvfmadd231ps ymm8, ymm4, ymm14\n\
         vpmaddubsw ymm1, ymm12, ymm15\nvpmaddwd ymm1, ymm1, ymm15\nvpsubd ymm1, ymm1, ymm13\nvcvtdq2ps ymm5, ymm1\nvfmadd231ps ymm9, ymm5, ymm14\n\
         vpmaddubsw ymm2, ymm12, ymm15\nvpmaddwd ymm2, ymm2, ymm15\nvpsubd ymm2, ymm2, ymm13\nvcvtdq2ps ymm6, ymm2\nvfmadd231ps ymm10, ymm6, ymm14\n\
         vpmaddubsw ymm3, ymm12, ymm15\nvpmaddwd ymm3, ymm3, ymm15\nvpsubd ymm3, ymm3, ymm13\nvcvtdq2ps ymm7, ymm3\nvfmadd231ps ymm11, ymm7, ymm14");
    time_mix!("block dot ×4, 16-bit: madd ×2, add, cvt, fma", 20,
        "vpmaddwd ymm0, ymm12, ymm15\nvpmaddwd ymm4, ymm13, ymm15\nvpaddd ymm0, ymm0, ymm4\nvcvtdq2ps ymm0, ymm0\nvfmadd231ps ymm8, ymm0, ymm14\n\
         vpmaddwd ymm1, ymm12, ymm15\nvpmaddwd ymm5, ymm13, ymm15\nvpaddd ymm1, ymm1, ymm5\nvcvtdq2ps ymm1, ymm1\nvfmadd231ps ymm9, ymm1, ymm14\n\
         vpmaddwd ymm2, ymm12, ymm15\nvpmaddwd ymm6, ymm13, ymm15\nvpaddd ymm2, ymm2, ymm6\nvcvtdq2ps ymm2, ymm2\nvfmadd231ps ymm10, ymm2, ymm14\n\
         vpmaddwd ymm3, ymm12, ymm15\nvpmaddwd ymm7, ymm13, ymm15\nvpaddd ymm3, ymm3, ymm7\nvcvtdq2ps ymm3, ymm3\nvfmadd231ps ymm11, ymm3, ymm14");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
