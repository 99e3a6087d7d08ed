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
//! The last mixes give up the reference's order for exact integer block
//! sums (one conversion and multiply-add per block): eight pairs' lanes
//! reduced by `vphaddd`, and eight weight rows interleaved four bytes at a
//! time, so one `maddubs` of a broadcast activation word serves eight rows
//! (for 5-bit weights four of those add in 16 bits before one `madd`).
//! docs/PERFORMANCE.md ("Q5_0 in exact integer block sums") has what that
//! gave as a kernel, and why it was not kept. Then the reference mix with
//! the VNNI kernels' integer-to-float step (`vpaddd` and `vsubps` of
//! 1.5 · 2^23 instead of `vcvtdq2ps`), and pairs of single instructions,
//! which show which of them share issue ports.
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
    // Exact integer block sums, eight pairs (one weight block against eight
    // activation rows) reduced to one vector of eight block sums; then eight
    // weight rows interleaved, so each lane is one row's sum (no reduction).
    time_mix!("8 pairs, integer sums: 8×(sign, maddubs, madd), 6 phaddd, 2 perm, add, cvt, fma", 35,
        "vpsignb ymm0, ymm12, ymm15\nvpmaddubsw ymm0, ymm0, ymm15\nvpmaddwd ymm0, ymm0, ymm14\n\
         vpsignb ymm1, ymm12, ymm15\nvpmaddubsw ymm1, ymm1, ymm15\nvpmaddwd ymm1, ymm1, ymm14\n\
         vpsignb ymm2, ymm12, ymm15\nvpmaddubsw ymm2, ymm2, ymm15\nvpmaddwd ymm2, ymm2, ymm14\n\
         vpsignb ymm3, ymm12, ymm15\nvpmaddubsw ymm3, ymm3, ymm15\nvpmaddwd ymm3, ymm3, ymm14\n\
         vpsignb ymm4, ymm12, ymm15\nvpmaddubsw ymm4, ymm4, ymm15\nvpmaddwd ymm4, ymm4, ymm14\n\
         vpsignb ymm5, ymm12, ymm15\nvpmaddubsw ymm5, ymm5, ymm15\nvpmaddwd ymm5, ymm5, ymm14\n\
         vpsignb ymm6, ymm12, ymm15\nvpmaddubsw ymm6, ymm6, ymm15\nvpmaddwd ymm6, ymm6, ymm14\n\
         vpsignb ymm7, ymm12, ymm15\nvpmaddubsw ymm7, ymm7, ymm15\nvpmaddwd ymm7, ymm7, ymm14\n\
         vphaddd ymm0, ymm0, ymm1\nvphaddd ymm2, ymm2, ymm3\nvphaddd ymm4, ymm4, ymm5\nvphaddd ymm6, ymm6, ymm7\n\
         vphaddd ymm0, ymm0, ymm2\nvphaddd ymm4, ymm4, ymm6\n\
         vperm2i128 ymm1, ymm0, ymm4, 0x20\nvperm2i128 ymm3, ymm0, ymm4, 0x31\nvpaddd ymm1, ymm1, ymm3\n\
         vcvtdq2ps ymm1, ymm1\nvfmadd231ps ymm11, ymm1, ymm13");
    time_mix!("8 pairs, 5-bit unsigned integer sums: 8 maddubs, 6 phaddw, 2 madd, phaddd, perm, add, sub, cvt, fma", 22,
        "vpmaddubsw ymm0, ymm12, ymm15\nvpmaddubsw ymm1, ymm12, ymm15\nvpmaddubsw ymm2, ymm12, ymm15\nvpmaddubsw ymm3, ymm12, ymm15\n\
         vpmaddubsw ymm4, ymm12, ymm15\nvpmaddubsw ymm5, ymm12, ymm15\nvpmaddubsw ymm6, ymm12, ymm15\nvpmaddubsw ymm7, ymm12, ymm15\n\
         vphaddw ymm0, ymm0, ymm1\nvphaddw ymm2, ymm2, ymm3\nvphaddw ymm4, ymm4, ymm5\nvphaddw ymm6, ymm6, ymm7\n\
         vphaddw ymm0, ymm0, ymm2\nvphaddw ymm4, ymm4, ymm6\n\
         vpmaddwd ymm0, ymm0, ymm14\nvpmaddwd ymm4, ymm4, ymm14\nvphaddd ymm0, ymm0, ymm4\n\
         vperm2i128 ymm1, ymm0, ymm0, 0x01\nvpaddd ymm1, ymm1, ymm0\nvpsubd ymm1, ymm1, ymm10\n\
         vcvtdq2ps ymm1, ymm1\nvfmadd231ps ymm11, ymm1, ymm13");
    time_mix!("8 vphaddd", 8,
        "vphaddd ymm0, ymm0, ymm15\nvphaddd ymm1, ymm1, ymm15\nvphaddd ymm2, ymm2, ymm15\nvphaddd ymm3, ymm3, ymm15\nvphaddd ymm4, ymm4, ymm15\nvphaddd ymm5, ymm5, ymm15\nvphaddd ymm6, ymm6, ymm15\nvphaddd ymm7, ymm7, ymm15");
    time_mix!("8 pairs, rows interleaved, 5-bit: 8 maddubs, 6 paddw, 2 madd, paddd, subd, cvt, mul, fma", 22,
        "vpmaddubsw ymm0, ymm8, ymm15\nvpmaddubsw ymm1, ymm9, ymm15\nvpmaddubsw ymm2, ymm10, ymm15\nvpmaddubsw ymm3, ymm11, ymm15\n\
         vpmaddubsw ymm4, ymm8, ymm14\nvpmaddubsw ymm5, ymm9, ymm14\nvpmaddubsw ymm6, ymm10, ymm14\nvpmaddubsw ymm7, ymm11, ymm14\n\
         vpaddw ymm0, ymm0, ymm1\nvpaddw ymm2, ymm2, ymm3\nvpaddw ymm0, ymm0, ymm2\n\
         vpaddw ymm4, ymm4, ymm5\nvpaddw ymm6, ymm6, ymm7\nvpaddw ymm4, ymm4, ymm6\n\
         vpmaddwd ymm0, ymm0, ymm13\nvpmaddwd ymm4, ymm4, ymm13\nvpaddd ymm0, ymm0, ymm4\nvpsubd ymm0, ymm0, ymm13\n\
         vcvtdq2ps ymm0, ymm0\nvmulps ymm1, ymm13, ymm14\nvfmadd231ps ymm12, ymm0, ymm1");
    time_mix!("8 pairs, rows interleaved, signed 8-bit: 8×(sign, maddubs, madd, addd), cvt, mul, fma", 35,
        "vpsignb ymm0, ymm15, ymm8\nvpmaddubsw ymm0, ymm8, ymm0\nvpmaddwd ymm0, ymm0, ymm13\n\
         vpsignb ymm1, ymm15, ymm9\nvpmaddubsw ymm1, ymm9, ymm1\nvpmaddwd ymm1, ymm1, ymm13\n\
         vpsignb ymm2, ymm15, ymm10\nvpmaddubsw ymm2, ymm10, ymm2\nvpmaddwd ymm2, ymm2, ymm13\n\
         vpsignb ymm3, ymm15, ymm11\nvpmaddubsw ymm3, ymm11, ymm3\nvpmaddwd ymm3, ymm3, ymm13\n\
         vpsignb ymm4, ymm14, ymm8\nvpmaddubsw ymm4, ymm8, ymm4\nvpmaddwd ymm4, ymm4, ymm13\n\
         vpsignb ymm5, ymm14, ymm9\nvpmaddubsw ymm5, ymm9, ymm5\nvpmaddwd ymm5, ymm5, ymm13\n\
         vpsignb ymm6, ymm14, ymm10\nvpmaddubsw ymm6, ymm10, ymm6\nvpmaddwd ymm6, ymm6, ymm13\n\
         vpsignb ymm7, ymm14, ymm11\nvpmaddubsw ymm7, ymm11, ymm7\nvpmaddwd ymm7, ymm7, ymm13\n\
         vpaddd ymm0, ymm0, ymm1\nvpaddd ymm2, ymm2, ymm3\nvpaddd ymm4, ymm4, ymm5\nvpaddd ymm6, ymm6, ymm7\n\
         vpaddd ymm0, ymm0, ymm2\nvpaddd ymm4, ymm4, ymm6\nvpaddd ymm0, ymm0, ymm4\n\
         vcvtdq2ps ymm0, ymm0\nvmulps ymm1, ymm13, ymm14\nvfmadd231ps ymm12, ymm0, ymm1");
    time_mix!("block dot ×4, magic: sign, maddubs, madd, add magic, sub magic, fma", 24,
        "vpsignb ymm0, ymm12, ymm15\nvpmaddubsw ymm0, ymm0, ymm15\nvpmaddwd ymm0, ymm0, ymm15\nvpaddd ymm4, ymm0, ymm13\nvsubps ymm4, ymm4, ymm13\nvfmadd231ps ymm8, ymm4, ymm14\n\
         vpsignb ymm1, ymm12, ymm15\nvpmaddubsw ymm1, ymm1, ymm15\nvpmaddwd ymm1, ymm1, ymm15\nvpaddd ymm5, ymm1, ymm13\nvsubps ymm5, ymm5, ymm13\nvfmadd231ps ymm9, ymm5, ymm14\n\
         vpsignb ymm2, ymm12, ymm15\nvpmaddubsw ymm2, ymm2, ymm15\nvpmaddwd ymm2, ymm2, ymm15\nvpaddd ymm6, ymm2, ymm13\nvsubps ymm6, ymm6, ymm13\nvfmadd231ps ymm10, ymm6, ymm14\n\
         vpsignb ymm3, ymm12, ymm15\nvpmaddubsw ymm3, ymm3, ymm15\nvpmaddwd ymm3, ymm3, ymm15\nvpaddd ymm7, ymm3, ymm13\nvsubps ymm7, ymm7, ymm13\nvfmadd231ps ymm11, ymm7, ymm14");
    time_mix!("block dot ×4, 16-bit, magic: madd ×2, add, add magic, sub magic, fma", 24,
        "vpmaddwd ymm0, ymm12, ymm15\nvpmaddwd ymm4, ymm13, ymm15\nvpaddd ymm0, ymm0, ymm4\nvpaddd ymm0, ymm0, ymm13\nvsubps ymm0, ymm0, ymm13\nvfmadd231ps ymm8, ymm0, ymm14\n\
         vpmaddwd ymm1, ymm12, ymm15\nvpmaddwd ymm5, ymm13, ymm15\nvpaddd ymm1, ymm1, ymm5\nvpaddd ymm1, ymm1, ymm13\nvsubps ymm1, ymm1, ymm13\nvfmadd231ps ymm9, ymm1, ymm14\n\
         vpmaddwd ymm2, ymm12, ymm15\nvpmaddwd ymm6, ymm13, ymm15\nvpaddd ymm2, ymm2, ymm6\nvpaddd ymm2, ymm2, ymm13\nvsubps ymm2, ymm2, ymm13\nvfmadd231ps ymm10, ymm2, ymm14\n\
         vpmaddwd ymm3, ymm12, ymm15\nvpmaddwd ymm7, ymm13, ymm15\nvpaddd ymm3, ymm3, ymm7\nvpaddd ymm3, ymm3, ymm13\nvsubps ymm3, ymm3, ymm13\nvfmadd231ps ymm11, ymm3, ymm14");
    time_mix!("8 vcvtdq2ps", 8,
        "vcvtdq2ps ymm0, ymm15\nvcvtdq2ps ymm1, ymm15\nvcvtdq2ps ymm2, ymm15\nvcvtdq2ps ymm3, ymm15\nvcvtdq2ps ymm4, ymm15\nvcvtdq2ps ymm5, ymm15\nvcvtdq2ps ymm6, ymm15\nvcvtdq2ps ymm7, ymm15");
    time_mix!("8 vpmaddwd", 8,
        "vpmaddwd ymm0, ymm0, ymm15\nvpmaddwd ymm1, ymm1, ymm15\nvpmaddwd ymm2, ymm2, ymm15\nvpmaddwd ymm3, ymm3, ymm15\nvpmaddwd ymm4, ymm4, ymm15\nvpmaddwd ymm5, ymm5, ymm15\nvpmaddwd ymm6, ymm6, ymm15\nvpmaddwd ymm7, ymm7, ymm15");
    time_mix!("4 vpmaddubsw + 4 vfmadd231ps", 8,
        "vpmaddubsw ymm0, ymm0, ymm15\nvfmadd231ps ymm8, ymm14, ymm15\nvpmaddubsw ymm1, ymm1, ymm15\nvfmadd231ps ymm9, ymm14, ymm15\nvpmaddubsw ymm2, ymm2, ymm15\nvfmadd231ps ymm10, ymm14, ymm15\nvpmaddubsw ymm3, ymm3, ymm15\nvfmadd231ps ymm11, ymm14, ymm15");
    time_mix!("4 vpsignb + 4 vpmaddubsw", 8,
        "vpsignb ymm0, ymm0, ymm15\nvpmaddubsw ymm4, ymm4, ymm15\nvpsignb ymm1, ymm1, ymm15\nvpmaddubsw ymm5, ymm5, ymm15\nvpsignb ymm2, ymm2, ymm15\nvpmaddubsw ymm6, ymm6, ymm15\nvpsignb ymm3, ymm3, ymm15\nvpmaddubsw ymm7, ymm7, ymm15");
    time_mix!("4 vcvtdq2ps + 4 vfmadd231ps", 8,
        "vcvtdq2ps ymm0, ymm15\nvfmadd231ps ymm8, ymm14, ymm15\nvcvtdq2ps ymm1, ymm15\nvfmadd231ps ymm9, ymm14, ymm15\nvcvtdq2ps ymm2, ymm15\nvfmadd231ps ymm10, ymm14, ymm15\nvcvtdq2ps ymm3, ymm15\nvfmadd231ps ymm11, ymm14, ymm15");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
