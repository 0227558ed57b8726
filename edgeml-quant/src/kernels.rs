//! Exact INT8 GEMM and convolution kernels with run-time ISA dispatch.
//!
//! Every kernel computes the raw integer sum `Σ_k A'[m,k]·B'[k,n]` where `A'` is the
//! activation mapped to `u8` (`i8` values are shifted by +128) and `B'` the weight mapped
//! to `i8` (`u8` values are shifted by −128); zero points are shifted alike, so
//! `(A − zA)(B − zB) = (A' − zA')(B' − zB')` exactly. Zero-point corrections use row sums
//! of `A'` (computed while packing A) and column sums of `B'` (computed once at pack
//! time). All arithmetic wraps modulo 2³², as ONNX int32 outputs do; no instruction with
//! saturating intermediates is used:
//!
//! | ISA | instruction | A / B packing |
//! |---|---|---|
//! | `amx` | `tdpbusd` on 16×64-byte tiles (u8×i8→i32) | u8 / i8, k in quads, K padded to 64 |
//! | `avx512vnni` | `vpdpbusd zmm` (u8×i8→i32, no intermediate saturation) | u8 / i8, k in quads |
//! | `avxvnni` | `vpdpbusd ymm` (VEX) | u8 / i8, k in quads |
//! | `avx2` | `vpmaddwd` on i16 widened at pack time (pairs ≤ 2·255·128) | i16 pairs |
//! | `neon-dotprod` | `sdot` (i8×i8→i32) on `A' − 128`, +128·colsum folded | i8 / i8, k in quads |
//! | `neon` | `smlal` by element (i16×i16→i32) | i16 / i16 |
//! | `scalar` | plain Rust | u8 / i8, k in quads |
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
pub(crate) mod depthwise;
pub(crate) mod direct;
#[cfg(target_arch = "aarch64")]
mod direct_neon;
#[cfg(target_arch = "x86_64")]
mod direct_x86;
pub(crate) mod driver;
#[cfg(target_arch = "x86_64")]
mod fused256;
#[cfg(target_arch = "aarch64")]
mod neon;
pub(crate) mod pack;
pub(crate) mod qadd;
mod scalar;
pub(crate) mod sparse;
#[cfg(target_arch = "x86_64")]
mod transpose;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// An instruction-set path of the INT8 kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Portable Rust; always available.
    Scalar,
    /// x86-64 AMX-INT8 (`tdpbusd` on tile registers) for GEMMs and dense convolutions
    /// (implicit GEMM), with AVX-512 VNNI for the edges, depthwise and the convolutions
    /// the tiles do not take.
    /// Needs AMX-TILE, AMX-INT8 and AVX-512 VNNI, and on Linux the tile data permission
    /// (requested once per process).
    Amx,
    /// x86-64 AVX2 with `vpmaddwd` on operands widened to i16 (exact).
    Avx2,
    /// x86-64 AVX-VNNI (`vpdpbusd` on 256-bit registers).
    AvxVnni,
    /// x86-64 AVX-512 VNNI (`vpdpbusd` on 512-bit registers).
    Avx512Vnni,
    /// aarch64 NEON without the dot-product extension (`smlal` on i16).
    Neon,
    /// aarch64 NEON with `sdot` (ARMv8.2 dotprod, Cortex-A76 and later).
    NeonDotprod,
}

/// Packing geometry of one ISA's micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geom {
    /// Rows of A per micro-tile.
    pub(crate) mr: usize,
    /// Columns of B per panel.
    pub(crate) nr: usize,
    /// Consecutive k values stored together (4: quads, 2: pairs, 1: lanes).
    pub(crate) ks: usize,
    /// K is zero-padded to a multiple of this (a multiple of `ks`).
    pub(crate) kal: usize,
    /// Operands stored widened to i16.
    pub(crate) wide: bool,
    /// A stored as `A' − 128` (i8) and `128·colsum(B')` added back.
    pub(crate) a_xor: bool,
}

impl Isa {
    /// Every path, in order of preference within an architecture.
    pub const ALL: [Isa; 7] = [
        Isa::Amx,
        Isa::Avx512Vnni,
        Isa::AvxVnni,
        Isa::Avx2,
        Isa::NeonDotprod,
        Isa::Neon,
        Isa::Scalar,
    ];

    /// The name used by `EDGEML_KERNELS` and in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Amx => "amx",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
            Isa::NeonDotprod => "neon-dotprod",
        }
    }

    /// Parses a name as accepted by `EDGEML_KERNELS`.
    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == s.trim())
    }

    /// Whether this CPU (detected at run time) can execute this path.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => amx::available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avxvnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            Isa::NeonDotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// All paths this CPU can execute, best first (always ends with `Scalar`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best path detected on this CPU, ignoring `EDGEML_KERNELS`.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// The path used by default: `EDGEML_KERNELS` if set to an available path, otherwise
    /// [`Isa::best`]. Decided once per process.
    ///
    /// An `EDGEML_KERNELS` value that names no path or a path this CPU lacks is ignored
    /// (the best path is used), so a stale setting never makes a program fail.
    pub fn selected() -> Isa {
        static SEL: OnceLock<Isa> = OnceLock::new();
        *SEL.get_or_init(|| {
            std::env::var("EDGEML_KERNELS")
                .ok()
                .and_then(|s| Isa::from_name(&s))
                .filter(|i| i.is_available())
                .unwrap_or_else(Isa::best)
        })
    }

    pub(crate) fn geom(self) -> Geom {
        let g = |mr, nr, ks, wide, a_xor| Geom {
            mr,
            nr,
            ks,
            kal: ks,
            wide,
            a_xor,
        };
        match self {
            Isa::Scalar => g(4, 8, 4, false, false),
            Isa::Amx => Geom {
                kal: 64,
                ..g(32, 32, 4, false, false)
            },
            Isa::Avx2 => g(6, 16, 2, true, false),
            Isa::AvxVnni => g(6, 16, 4, false, false),
            Isa::Avx512Vnni => g(8, 32, 4, false, false),
            Isa::Neon => g(4, 16, 1, true, false),
            Isa::NeonDotprod => g(4, 16, 4, false, true),
        }
    }
}

impl core::fmt::Display for Isa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs `job` over the m-tiles `mt` and n-panels `np` with the kernel of `isa`.
///
/// # Safety
/// `job`'s pointers must describe valid packed operands and an output that the ranges
/// may write, and `isa` must be available (checked when the operands were packed).
pub(crate) unsafe fn run_block(
    isa: Isa,
    job: &driver::Job<'_>,
    mt: core::ops::Range<usize>,
    np: core::ops::Range<usize>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: availability checked by the caller; operands packed with Amx's geometry.
        Isa::Amx => unsafe { amx::block_amx(job, mt, np) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: availability checked by the caller; operands valid per contract.
        Isa::Avx512Vnni => unsafe { x86::block_avx512vnni(job, mt, np) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni => unsafe { x86::block_avxvnni(job, mt, np) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::block_avx2(job, mt, np) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::NeonDotprod => unsafe { neon::block_dotprod(job, mt, np) },
        #[cfg(target_arch = "aarch64")]
        // SAFETY: as above.
        Isa::Neon => unsafe { neon::block_neon(job, mt, np) },
        // SAFETY: as above.
        _ => unsafe { scalar::block(job, mt, np) },
    }
}

/// Whether `isa` has an indirect-convolution kernel (u8 A read in place, k in quads).
/// `amx` has none: its tiles load rows at one stride, so convolutions use im2col.
pub(crate) fn has_indirect(isa: Isa) -> bool {
    let g = isa.geom();
    !g.wide && !g.a_xor && isa != Isa::Amx
}

/// As [`run_block`] for an indirect convolution.
///
/// # Safety
/// As [`driver::block_loop_ind`]; `isa` must be available and [`has_indirect`].
pub(crate) unsafe fn run_block_ind(
    isa: Isa,
    job: &driver::Job<'_>,
    ind: &driver::Indirect,
    mt: core::ops::Range<usize>,
    np: core::ops::Range<usize>,
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: availability checked by the caller; operands valid per contract.
        Isa::Avx512Vnni => unsafe { x86::block_ind_avx512vnni(job, ind, mt, np) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::AvxVnni => unsafe { x86::block_ind_avxvnni(job, ind, mt, np) },
        // SAFETY: as above.
        _ => unsafe { scalar::block_ind(job, ind, mt, np) },
    }
}
