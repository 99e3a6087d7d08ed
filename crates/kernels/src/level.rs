//! Which kernel level runs: the best this CPU supports, capped by the
//! `PARLANCE_KERNELS` environment variable (read once, at the first kernel
//! call). The cap lets a developer on an AVX-512 machine run, test and time
//! the paths an AVX2-only or AVX-VNNI laptop takes; every level gives results
//! within the tests' tolerances of the reference (the SIMD levels give each
//! other's bits exactly).
//!
//! A cap this CPU cannot run falls to the best level below it that it can
//! (with a warning in [`Selection::warning`]); a value that names no level
//! leaves the kernels uncapped, and [`Selection::cap`] holds the error, which
//! `parlance` reports before it starts.

use crate::Isa;

/// The environment variable capping the kernel level.
pub const KERNELS_ENV: &str = "PARLANCE_KERNELS";

/// A kernel level, slowest to fastest (the order is the cap's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable Rust, any CPU.
    Scalar,
    /// x86_64 AVX2 with FMA and F16C: integer products by `maddubs`.
    Avx2,
    /// AVX2 plus AVX-VNNI (VEX-encoded 256-bit `vpdpbusd`, as on Intel
    /// client CPUs since Alder Lake).
    AvxVnni,
    /// AVX2 plus AVX512-VNNI, -VL and -BW, used in 256-bit registers (32 of
    /// them).
    Avx512,
}

impl Level {
    /// Every level, slowest first.
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2, Level::AvxVnni, Level::Avx512];

    /// The name `PARLANCE_KERNELS` takes and the logs print.
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::AvxVnni => "avx-vnni",
            Level::Avx512 => "avx512",
        }
    }

    /// The level a `PARLANCE_KERNELS` value names (case and `-`/`_`
    /// insensitive; `avxvnni` and `avx512-vnni` are accepted too).
    pub fn parse(value: &str) -> Result<Level, String> {
        let v = value.trim().to_ascii_lowercase().replace(['-', '_'], "");
        match v.as_str() {
            "scalar" => Ok(Level::Scalar),
            "avx2" => Ok(Level::Avx2),
            "avxvnni" => Ok(Level::AvxVnni),
            "avx512" | "avx512vnni" => Ok(Level::Avx512),
            _ => Err(format!(
                "{KERNELS_ENV}={value:?} names no kernel level (one of scalar, avx2, avx-vnni, avx512)"
            )),
        }
    }

    /// Whether this CPU can run the level's kernels.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = || has!("avx2") && has!("fma") && has!("f16c");
            match self {
                Level::Scalar => true,
                Level::Avx2 => avx2(),
                Level::AvxVnni => avx2() && has!("avxvnni"),
                Level::Avx512 => {
                    avx2() && has!("avx512vnni") && has!("avx512vl") && has!("avx512bw")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Level::Scalar
        }
    }

    /// The fastest level this CPU supports, with no cap.
    pub fn supported() -> Level {
        Level::best_up_to(Level::Avx512)
    }

    /// The fastest level this CPU supports no faster than `cap`.
    pub fn best_up_to(cap: Level) -> Level {
        Level::ALL
            .into_iter()
            .rev()
            .find(|l| *l <= cap && l.is_available())
            .unwrap_or(Level::Scalar)
    }

    /// The level the kernels run at: [`Selection::get`]'s.
    pub fn active() -> Level {
        Selection::get().level
    }

    /// The instruction set family of the level.
    pub fn isa(self) -> Isa {
        match self {
            Level::Scalar => Isa::Scalar,
            _ => Isa::Avx2,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel level chosen for this process, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The level every kernel runs at.
    pub level: Level,
    /// The fastest level this CPU supports.
    pub supported: Level,
    /// The cap `PARLANCE_KERNELS` set (`Ok(None)`: unset or empty), or why
    /// its value names no level (then nothing is capped).
    pub cap: Result<Option<Level>, String>,
}

impl Selection {
    /// The selection for this process: `PARLANCE_KERNELS` read once.
    pub fn get() -> &'static Selection {
        static SELECTION: std::sync::OnceLock<Selection> = std::sync::OnceLock::new();
        SELECTION.get_or_init(|| Selection::from_value(std::env::var(KERNELS_ENV).ok().as_deref()))
    }

    /// The selection a `PARLANCE_KERNELS` value (or its absence) makes on this CPU.
    pub fn from_value(value: Option<&str>) -> Selection {
        let supported = Level::supported();
        let cap = match value.map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => Level::parse(v).map(Some),
        };
        let level = match cap {
            Ok(Some(c)) => Level::best_up_to(c),
            _ => supported,
        };
        Selection {
            level,
            supported,
            cap,
        }
    }

    /// A warning when the cap asked for a level this CPU lacks (it runs the
    /// best level below) or named none (it runs uncapped).
    pub fn warning(&self) -> Option<String> {
        match &self.cap {
            Err(e) => Some(format!("{e}; running {}", self.level)),
            Ok(Some(c)) if *c != self.level => Some(format!(
                "{KERNELS_ENV}={c}: this CPU lacks {c}; running {} (the best below it)",
                self.level
            )),
            _ => None,
        }
    }

    /// One line for the logs: the level and, when capped, the CPU's best.
    pub fn describe(&self) -> String {
        match self.cap {
            Ok(Some(_)) if self.level != self.supported => format!(
                "kernels: {} (capped by {KERNELS_ENV}; this CPU supports {})",
                self.level, self.supported
            ),
            _ => format!("kernels: {}", self.level),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Ok(l));
        }
        assert_eq!(Level::parse("AVX_VNNI"), Ok(Level::AvxVnni));
        assert_eq!(Level::parse("avx512-vnni"), Ok(Level::Avx512));
        let err = Level::parse("sse9").unwrap_err();
        assert!(
            err.contains(KERNELS_ENV) && err.contains("avx-vnni"),
            "{err}"
        );
    }

    #[test]
    fn a_cap_never_raises_the_level_and_lands_on_an_available_one() {
        let best = Level::supported();
        assert!(best.is_available());
        for cap in Level::ALL {
            let s = Selection::from_value(Some(cap.name()));
            assert!(s.level <= cap && s.level <= best && s.level.is_available());
            assert_eq!(s.warning().is_some(), !cap.is_available(), "{cap}");
        }
        let none = Selection::from_value(None);
        assert_eq!((none.level, none.warning()), (best, None));
        let bad = Selection::from_value(Some("avx1024"));
        assert_eq!(bad.level, best);
        assert!(bad.cap.is_err() && bad.warning().unwrap().contains("avx1024"));
        let scalar = Selection::from_value(Some("scalar"));
        assert_eq!(scalar.level.isa(), Isa::Scalar);
        assert!(scalar.describe().contains("kernels: scalar"));
    }
}
