//! Quantized matrix-vector and matrix-matrix kernels for the engine's hot path.
//!
//! Weights stay in their GGML block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, F16, BF16, F32) straight from the
//! memory-mapped GGUF file. Each [`matmul`] quantizes the activation rows once
//! to the weight type's "vec-dot type", exactly as the llama.cpp CPU backend
//! does (Q4_1 and Q5_1 pair with Q8_1; Q4_0, Q5_0, Q8_0 and IQ4_NL with Q8_0;
//! the K-quants and IQ4_XS with Q8_K; F16 with F16; BF16 with bf16-rounded
//! activations), and then takes integer dot products block by block. For the
//! formats of the catalog models (Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, F16) the
//! blocks' float terms are added in the order of the reference kernel a row
//! would meet ([`RowOrder`]), so our logits equal llama.cpp's bit for bit on
//! x86 CPUs with AVX2; the others follow llama.cpp's arithmetic but not its
//! summation order (checked by KL divergence, `docs/MODELS.md`).
//!
//! The inner loops exist twice: a portable scalar version ([`Isa::Scalar`]) and
//! an AVX2+FMA+F16C version ([`Isa::Avx2`]) picked at run time, so one binary
//! runs on any x86_64 (and builds on other architectures with the scalar path).
//! Where the CPU has AVX512-VNNI (with AVX512-VL), the block formats'
//! several-row kernels take their integer products with VNNI and turn them
//! into floats with exact integer arithmetic; they give the AVX2 kernels'
//! bits exactly; on CPUs with AVX-VNNI but no AVX-512 (Intel client CPUs
//! since Alder Lake) the same products take AVX-VNNI's VEX-encoded form.
//! [`Level`] says which of these runs: the best the CPU has, capped by
//! `PARLANCE_KERNELS` (`scalar`, `avx2`, `avx-vnni`, `avx512`) so any CPU
//! class's paths can be tested and timed on a faster machine.
//! Many activation rows of `f32` against unquantized weights (an encoder's
//! batch) take the packed, cache-blocked [`gemm_f32`] instead, on weights
//! packed once at load ([`PackedF32`]).
//! Work is split over a persistent [`ThreadPool`]. [`mod@reference`] holds slow,
//! obviously-correct versions that the tests compare against.

mod act;
pub mod attn;
mod f16;
mod formats;
mod gemm;
pub mod glu;
mod level;
mod lines;
mod matmul;
mod order;
mod pool;
pub mod reference;

#[cfg(target_arch = "x86_64")]
mod avx2;

pub use attn::{attend_f16, KvRows};
pub use f16::{f16_to_f32, f32_to_f16};
pub use gemm::{gemm_f32, gemm_f32_with, PackedF32};
pub use gguf::GgmlType;
pub use level::{Level, Selection, KERNELS_ENV};
pub use matmul::{
    matmul, matmul_many, matmul_many_ordered, matmul_many_with, matmul_with, QMatrix,
};
pub use order::{
    RowOrder, REFERENCE_BATCH, REFERENCE_CHECKPOINT_TAIL, REFERENCE_F32_ATTENTION_ROWS,
    REFERENCE_UBATCH,
};
pub use pool::{default_threads, ThreadPool};

/// Everything that can go wrong when describing a weight matrix or converting rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The type has no kernel here (or no quantizer, for [`quantize_row`]).
    #[error("tensor type {0} is not supported by the kernels")]
    UnsupportedType(GgmlType),
    /// A row length is not a whole number of the type's blocks.
    #[error("row length {cols} is not a multiple of the {ty} block size {block}")]
    BadRowLength {
        ty: GgmlType,
        cols: usize,
        block: usize,
    },
    /// A byte or element buffer has the wrong size for the shape.
    #[error("buffer holds {got} bytes or elements, the shape needs {expected}")]
    SizeMismatch { expected: usize, got: usize },
}

/// Which instruction set a kernel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86_64 AVX2 with FMA and F16C.
    Avx2,
}

impl Isa {
    /// The instruction set the kernels run on: the family of
    /// [`Level::active`] (the fastest this CPU supports, unless
    /// `PARLANCE_KERNELS` caps it at `scalar`).
    pub fn detect() -> Isa {
        Level::active().isa()
    }

    /// Whether this CPU can run kernels for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2 => false,
        }
    }
}

/// Whether [`QMatrix`] and [`matmul`] accept weights of this type.
pub fn is_supported(ty: GgmlType) -> bool {
    formats::Format::of(ty).is_some()
}

/// Converts one row of `ty` blocks to `f32`; `dst.len()` is the element count.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let f = formats::Format::of(ty).ok_or(KernelError::UnsupportedType(ty))?;
    check_row(ty, src.len(), dst.len())?;
    f.dequantize(src, dst);
    Ok(())
}

/// Quantizes a row of `f32` to `ty` blocks.
///
/// Q8_0, Q8_1 and Q8_K give exactly the bytes llama.cpp's x86 CPU backend
/// produces when it quantizes activations (Q8_0 and Q8_1 round half to even
/// with scale `127 / amax`; GGML's reference weight quantizer rounds half away
/// from zero, which differs only on exact ties). Q4_1 and Q5_0 follow GGML's
/// reference quantizers; Q4_K and Q6_K use a simpler (lower quality, still
/// valid) search than llama.cpp's, meant for tests; F16 and F32 are raw.
pub fn quantize_row(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, KernelError> {
    let bytes = ty.row_bytes(src.len()).ok_or(KernelError::BadRowLength {
        ty,
        cols: src.len(),
        block: ty.block_size(),
    })?;
    let out = match ty {
        GgmlType::Q8_1 => act::quantize_q8_1_bytes(src),
        GgmlType::Q8_K => act::quantize_q8_k_bytes(src),
        GgmlType::Q8_0 => act::quantize_q8_0_bytes(src),
        _ => formats::Format::of(ty)
            .ok_or(KernelError::UnsupportedType(ty))?
            .quantize(src),
    };
    debug_assert_eq!(out.len(), bytes);
    Ok(out)
}

/// Checks that `n_bytes` hold exactly `n` elements of `ty`.
fn check_row(ty: GgmlType, n_bytes: usize, n: usize) -> Result<(), KernelError> {
    let want = ty.row_bytes(n).ok_or(KernelError::BadRowLength {
        ty,
        cols: n,
        block: ty.block_size(),
    })?;
    if want != n_bytes {
        return Err(KernelError::SizeMismatch {
            expected: want,
            got: n_bytes,
        });
    }
    Ok(())
}
