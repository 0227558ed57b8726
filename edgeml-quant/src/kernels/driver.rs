//! The blocked tile loop shared by every ISA, its epilogue and the thread split.
#![allow(unsafe_code)]

use super::Isa;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// Largest `MR·NR` of any micro-kernel (avx512vnni: 8×32).
pub(crate) const MAX_TILE: usize = 256;

/// Where results go: a typed pointer plus element strides.
#[derive(Clone, Copy)]
pub(crate) enum OutPtr {
    I32(*mut i32),
    U8(*mut u8),
    I8(*mut i8),
    F32(*mut f32),
}

/// What is done to each corrected i32 accumulator before it is stored.
pub(crate) enum Post<'a> {
    /// Store the i32 value.
    I32,
    /// `clamp(round_half_even((acc + bias)·mult), lo, hi) + zp`, then store as u8/i8.
    Quant {
        mult: &'a [f32],
        bias: &'a [i32],
        zp: i32,
        lo: f32,
        hi: f32,
    },
    /// `(acc + bias)·mult` as f32.
    F32 { mult: &'a [f32], bias: &'a [i32] },
}

/// One GEMM problem with packed operands.
pub(crate) struct Job<'a> {
    /// Packed A (u8 / i8 / i16 elements, per the ISA's geometry).
    pub(crate) a: *const u8,
    /// Packed B.
    pub(crate) b: *const u8,
    /// K padded to the ISA's k-step.
    pub(crate) kp: usize,
    /// Row stride of packed A in elements (A is row-major, zero-padded to `kp`).
    pub(crate) lda: usize,
    pub(crate) m: usize,
    pub(crate) n: usize,
    /// Per row of A: `−rowsum(A')`.
    pub(crate) rowterm: &'a [i32],
    /// Per column: the constant correction.
    pub(crate) colterm: &'a [i32],
    /// Per column: `zB'` (empty when every zero point is 0).
    pub(crate) zb: &'a [i32],
    pub(crate) post: Post<'a>,
    pub(crate) out: OutPtr,
    /// Row and column strides of the output, in elements.
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

// SAFETY: a Job is only shared between the tasks of one `run` call, which write
// disjoint output tiles and only read the packed operands.
unsafe impl Sync for Job<'_> {}

/// One ISA's micro-kernel.
pub(crate) trait Tile {
    const MR: usize;
    const NR: usize;
    /// k values per packed group (documentation of the layout).
    #[allow(dead_code)]
    const KS: usize;
    /// Bytes per packed element.
    const ESZ: usize;
    /// Computes the raw `rows × NR` tile into `buf` (row stride `NR`). The reduction
    /// runs over `segs` segments of `seg` k-values; row `r`'s A values of segment `t`
    /// start at `ap[r·segs + t]` (a GEMM has one segment per row; an indirect
    /// convolution one per kernel tap).
    ///
    /// # Safety
    /// Each of those pointers must have `seg` readable elements, `b` must point at a
    /// packed B panel of `segs·seg·NR` elements, and the CPU must support the kernel's
    /// features.
    unsafe fn tile(
        rows: usize,
        segs: usize,
        seg: usize,
        ap: *const *const u8,
        b: *const u8,
        buf: &mut [i32; MAX_TILE],
    );
}

/// m-tiles per cache block: A block of about 96 rows stays in L2 while B panels stream.
const MC_ROWS: usize = 96;

/// The blocked loop over a range of m-tiles and n-panels.
///
/// # Safety
/// As [`Tile::tile`] for every tile of the ranges; the output must be writable there.
#[inline(always)]
pub(crate) unsafe fn block_loop<T: Tile>(job: &Job<'_>, mt: Range<usize>, np: Range<usize>) {
    let mut buf = [0i32; MAX_TILE];
    let mct = (MC_ROWS / T::MR).max(1);
    let mut mb = mt.start;
    while mb < mt.end {
        let me = (mb + mct).min(mt.end);
        for p in np.clone() {
            let n0 = p * T::NR;
            let cols = T::NR.min(job.n - n0);
            // SAFETY: panel p lies inside packed B (caller's contract).
            let b = unsafe { job.b.add(p * job.kp * T::NR * T::ESZ) };
            for t in mb..me {
                let m0 = t * T::MR;
                let rows = T::MR.min(job.m - m0);
                let mut ap = [core::ptr::null::<u8>(); 8];
                for (r, p) in ap.iter_mut().enumerate().take(rows) {
                    // SAFETY: row m0 + r lies inside packed A.
                    *p = unsafe { job.a.add((m0 + r) * job.lda * T::ESZ) };
                }
                // SAFETY: forwarded contract.
                unsafe { T::tile(rows, 1, job.kp, ap.as_ptr(), b, &mut buf) };
                // SAFETY: forwarded contract.
                unsafe { finish_tile(job, &mut buf, T::NR, m0, rows, n0, cols) };
            }
        }
        mb = me;
    }
}

/// Applies the zero-point corrections and the epilogue to a raw tile and stores it.
///
/// # Safety
/// The output must be writable at rows `m0..m0+rows`, columns `n0..n0+cols`.
#[inline(always)]
pub(crate) unsafe fn finish_tile(
    job: &Job<'_>,
    buf: &mut [i32; MAX_TILE],
    nr: usize,
    m0: usize,
    rows: usize,
    n0: usize,
    cols: usize,
) {
    let colterm = &job.colterm[n0..n0 + cols];
    let transposed = job.cs != 1 && job.rs == 1;
    for r in 0..rows {
        let row = &mut buf[r * nr..r * nr + cols];
        if job.zb.is_empty() {
            for (v, &ct) in row.iter_mut().zip(colterm) {
                *v = v.wrapping_add(ct);
            }
        } else {
            let rt = job.rowterm[m0 + r];
            let zb = &job.zb[n0..n0 + cols];
            for ((v, &ct), &z) in row.iter_mut().zip(colterm).zip(zb) {
                *v = v.wrapping_add(ct).wrapping_add(z.wrapping_mul(rt));
            }
        }
        if !transposed {
            let off = (m0 + r) as isize * job.rs + n0 as isize * job.cs;
            // SAFETY: the output covers this row (caller's contract).
            unsafe { store_row(job, row, off, n0) };
        } else if let Post::Quant {
            mult,
            bias,
            zp,
            lo,
            hi,
        } = &job.post
        {
            quant_row(row, mult, bias, *zp, *lo, *hi, n0);
        }
    }
    if transposed {
        // Column-major output (a convolution's NCHW planes): each column's `rows`
        // values are contiguous there.
        // SAFETY: the output covers this tile (caller's contract).
        unsafe { store_cols(job, buf, nr, m0, rows, n0, cols) };
    }
}

/// Stores a finished tile column by column into an output with unit row stride.
///
/// # Safety
/// The output must be writable at rows `m0..m0+rows`, columns `n0..n0+cols`.
#[inline(always)]
unsafe fn store_cols(
    job: &Job<'_>,
    buf: &[i32; MAX_TILE],
    nr: usize,
    m0: usize,
    rows: usize,
    n0: usize,
    cols: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let signed = match job.out {
            OutPtr::U8(_) => Some(false),
            OutPtr::I8(_) => Some(true),
            _ => None,
        };
        if let (Some(signed), Post::Quant { .. }) = (signed, &job.post) {
            let p = match job.out {
                OutPtr::U8(p) => p,
                OutPtr::I8(p) => p.cast(),
                _ => core::ptr::null_mut(),
            };
            // SAFETY: SSE2 is part of x86-64; the tile's columns are writable.
            unsafe {
                super::transpose::store_u8_cols(
                    buf,
                    nr,
                    rows,
                    cols,
                    p.offset(m0 as isize + n0 as isize * job.cs),
                    job.cs,
                    signed,
                )
            };
            return;
        }
    }
    for j in 0..cols {
        let off = m0 as isize + (n0 + j) as isize * job.cs;
        let col = (0..rows).map(|r| buf[r * nr + j]);
        // SAFETY: `rows` contiguous elements at `off` belong to the output.
        unsafe {
            match (&job.post, job.out) {
                (Post::I32, OutPtr::I32(p)) => {
                    for (r, v) in col.enumerate() {
                        *p.offset(off + r as isize) = v;
                    }
                }
                (Post::Quant { .. }, OutPtr::U8(p)) => {
                    for (r, v) in col.enumerate() {
                        *p.offset(off + r as isize) = v as u8;
                    }
                }
                (Post::Quant { .. }, OutPtr::I8(p)) => {
                    for (r, v) in col.enumerate() {
                        *p.offset(off + r as isize) = v as i8;
                    }
                }
                (Post::F32 { mult, bias }, OutPtr::F32(p)) => {
                    let (m, b) = (mult[n0 + j], bias[n0 + j]);
                    for (r, v) in col.enumerate() {
                        *p.offset(off + r as isize) = v.wrapping_add(b) as f32 * m;
                    }
                }
                _ => debug_assert!(false, "output type does not match the epilogue"),
            }
        }
    }
}

/// Stores one corrected row (columns `n0..n0+row.len()`) at element offset `off`.
///
/// # Safety
/// Those output elements must be writable.
#[inline(always)]
unsafe fn store_row(job: &Job<'_>, row: &mut [i32], off: isize, n0: usize) {
    let cs = job.cs;
    let at = |j: usize| off + j as isize * cs;
    match (&job.post, job.out) {
        (Post::I32, OutPtr::I32(p)) => {
            if cs == 1 {
                // SAFETY: `row.len()` contiguous elements are writable at `off`.
                let dst = unsafe { core::slice::from_raw_parts_mut(p.offset(off), row.len()) };
                dst.copy_from_slice(row);
            } else {
                for (j, &v) in row.iter().enumerate() {
                    // SAFETY: element j of this output row is writable.
                    unsafe { *p.offset(at(j)) = v };
                }
            }
        }
        (
            Post::Quant {
                mult,
                bias,
                zp,
                lo,
                hi,
            },
            OutPtr::U8(p),
        ) => {
            quant_row(row, mult, bias, *zp, *lo, *hi, n0);
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: element j of this output row is writable.
                unsafe { *p.offset(at(j)) = v as u8 };
            }
        }
        (
            Post::Quant {
                mult,
                bias,
                zp,
                lo,
                hi,
            },
            OutPtr::I8(p),
        ) => {
            quant_row(row, mult, bias, *zp, *lo, *hi, n0);
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: element j of this output row is writable.
                unsafe { *p.offset(at(j)) = v as i8 };
            }
        }
        (Post::F32 { mult, bias }, OutPtr::F32(p)) => {
            for (j, &v) in row.iter().enumerate() {
                let x = v.wrapping_add(bias[n0 + j]) as f32 * mult[n0 + j];
                // SAFETY: element j of this output row is writable.
                unsafe { *p.offset(at(j)) = x };
            }
        }
        _ => debug_assert!(false, "output type does not match the epilogue"),
    }
}

/// The requantization of one row in place, shared by every ISA so results agree bit for
/// bit: f32 multiply, clamp to `[lo, hi]`, round half to even, add the zero point.
#[inline(always)]
pub(crate) fn quant_row(
    row: &mut [i32],
    mult: &[f32],
    bias: &[i32],
    zp: i32,
    lo: f32,
    hi: f32,
    c0: usize,
) {
    if c0 == usize::MAX {
        // One multiplier and bias for the whole row (a depthwise channel).
        let (m, b) = (mult[0], bias[0]);
        for v in row.iter_mut() {
            *v = quant_one(*v, b, m, zp, lo, hi);
        }
        return;
    }
    let mult = &mult[c0..c0 + row.len()];
    let bias = &bias[c0..c0 + row.len()];
    for ((v, &m), &b) in row.iter_mut().zip(mult).zip(bias) {
        *v = quant_one(*v, b, m, zp, lo, hi);
    }
}

/// One requantized value; `lo ≤ hi` are finite, so the rounded value fits in i32.
#[inline(always)]
pub(crate) fn quant_one(v: i32, bias: i32, mult: f32, zp: i32, lo: f32, hi: f32) -> i32 {
    let x = (v.wrapping_add(bias) as f32 * mult).max(lo).min(hi);
    // Round half to even by adding 1.5·2²³ (as MLAS does): exact for |x| < 2²², which
    // holds since `lo, hi` lie within ±510; this form vectorizes, `as i32` does not.
    (x + 12_582_912.0).to_bits() as i32 - 0x4B40_0000 + zp
}

/// Runs a whole job, splitting the n-panels (or m-tiles) over `threads` tasks.
pub(crate) fn run(isa: Isa, job: &Job<'_>, threads: usize) {
    let g = isa.geom();
    let mtiles = job.m.div_ceil(g.mr);
    let panels = job.n.div_ceil(g.nr);
    if mtiles == 0 || panels == 0 {
        return;
    }
    let threads = threads.max(1);
    let work = job.m as u64 * job.n as u64 * job.kp as u64;
    // With a stop condition (see `with_stop`) a task polls between chunks: chunks of
    // at least `STOP_WORK` multiply-adds (about 2 ms with VNNI, 1 ms with AMX), at most
    // `CHUNKS_PER_THREAD` per task, so one thread splits only long jobs.
    let poll_chunks = if stop_active() {
        (work / (threads as u64 * STOP_WORK)).clamp(1, CHUNKS_PER_THREAD as u64) as usize
    } else {
        1
    };
    if (threads == 1 && poll_chunks == 1) || work < 1 << 18 {
        // SAFETY: the job was built from validated, packed operands for `isa`.
        unsafe { super::run_block(isa, job, 0..mtiles, 0..panels) };
        return;
    }
    // A grid of chunks: the panels split as finely as the chunk budget allows, the
    // m-tiles only as far as needed to fill it (a chunk's consecutive panels reuse its
    // A rows from cache; chunks are claimed panel-group fastest); `amx` the other way
    // round (below).
    // `amx` copies its rows of A into tile order once per call of its block loop, so it
    // takes one chunk per task (finer chunks would repeat the copy for little work),
    // unless the run may be stopped: a task polls only between chunks.
    let per_thread = if isa == Isa::Amx || threads == 1 {
        poll_chunks
    } else {
        CHUNKS_PER_THREAD
    };
    let target = threads * per_thread;
    // `amx` splits the m-tiles first: each task copies only its own rows of A, where a
    // split of the panels would have every task copy all of them (a 1×1 convolution
    // with few output channels is mostly that copy).
    let (mch, nch) = if isa == Isa::Amx {
        let mch = mtiles.min(target);
        (mch, panels.min(target.div_ceil(mch)))
    } else {
        let nch = panels.min(target);
        (mtiles.min(target.div_ceil(nch)), nch)
    };
    par_chunks(mch * nch, threads, mch * nch, work, |r| {
        for c in r {
            let (mi, ni) = (c / nch, c % nch);
            let mt = mtiles * mi / mch..mtiles * (mi + 1) / mch;
            let np = panels * ni / nch..panels * (ni + 1) / nch;
            // SAFETY: chunks cover disjoint tiles of a valid job.
            unsafe { super::run_block(isa, job, mt, np) };
        }
    });
}

/// Chunks per task of a split loop: enough that a late task costs little, few enough
/// that each chunk still reuses its operands across several tiles.
const CHUNKS_PER_THREAD: usize = 8;

/// A stop condition (a run's deadline or cancellation) that the parallel kernel loops
/// poll between chunks of work.
pub(crate) type StopFn = dyn Fn() -> bool + Send + Sync;

thread_local! {
    /// The stop condition of the kernel calls this thread makes (see [`with_stop`]).
    static STOP: RefCell<Option<Arc<StopFn>>> = const { RefCell::new(None) };
    /// Set when a loop started on this thread skipped work because of [`STOP`].
    static STOPPED: Cell<bool> = const { Cell::new(false) };
}

/// Restores the thread's previous stop condition when dropped, on unwinding too, so a
/// stale condition never makes a later call skip work.
struct StopScope {
    prev: Option<Arc<StopFn>>,
    prev_stopped: bool,
}

impl Drop for StopScope {
    fn drop(&mut self) {
        STOP.with(|s| *s.borrow_mut() = self.prev.take());
        STOPPED.with(|s| s.set(self.prev_stopped));
    }
}

/// Multiply-adds (or comparable units) below which work is not split further just to
/// poll a stop condition.
pub(crate) const STOP_WORK: u64 = 1 << 26;

/// Whether kernel calls on this thread run under [`with_stop`].
pub(crate) fn stop_active() -> bool {
    STOP.with(|s| s.borrow().is_some())
}

/// Whether a loop started on this thread under [`with_stop`] has skipped work (a
/// caller with several loops in a row stops starting new ones).
pub(crate) fn stopped() -> bool {
    STOPPED.with(Cell::get)
}

/// Runs `f` with every parallel kernel loop it starts on this thread ([`par_chunks`],
/// which all GEMM, convolution and depthwise kernels split their work with) polling
/// `stop` before each chunk of work. Once `stop` returns true the remaining chunks are
/// skipped, leaving their part of the output unwritten. Returns `f`'s result and
/// whether any work was skipped; when it was, the result must be discarded.
pub(crate) fn with_stop<R>(stop: Arc<StopFn>, f: impl FnOnce() -> R) -> (R, bool) {
    let _scope = StopScope {
        prev: STOP.with(|s| s.replace(Some(stop))),
        prev_stopped: STOPPED.with(|s| s.replace(false)),
    };
    let r = f();
    (r, STOPPED.with(Cell::get))
}

/// Runs `f` over `0..units` on `threads` tasks (the calling thread is one of them),
/// split into chunks that the tasks claim from a shared counter. A task that starts
/// late (a pool thread still waking up, or a core busy with another process) claims
/// fewer chunks, and one that starts after the last chunk was claimed does nothing:
/// the caller waits only for chunks in progress, never for a task to be scheduled.
/// `chunks` is the number of chunks (at most `units`; 0 picks `CHUNKS_PER_THREAD` per
/// task).
///
/// `work` is the call's multiply-adds (or comparable units). Under a stop condition
/// ([`with_stop`]) one thread splits its work too, into chunks of at least
/// [`STOP_WORK`] (at most `CHUNKS_PER_THREAD`), so that it can poll between them.
pub(crate) fn par_chunks(
    units: usize,
    threads: usize,
    chunks: usize,
    work: u64,
    f: impl Fn(Range<usize>) + Sync,
) {
    let threads = threads.clamp(1, units.max(1));
    let stop = STOP.with(|s| s.borrow().clone());
    let chunks = if chunks == 0 {
        threads * CHUNKS_PER_THREAD
    } else {
        chunks
    };
    let chunks = if threads == 1 {
        match stop {
            Some(_) => chunks.min((work / STOP_WORK).clamp(1, CHUNKS_PER_THREAD as u64) as usize),
            None => 1,
        }
    } else {
        chunks
    }
    .min(units);
    if chunks <= 1 && threads == 1 {
        f(0..units);
        return;
    }
    if let Some(stop) = stop {
        let stopped = AtomicBool::new(false);
        let g = |r: Range<usize>| {
            if stopped.load(Ordering::Relaxed) || stop() {
                stopped.store(true, Ordering::Relaxed);
            } else {
                f(r);
            }
        };
        split(units, threads, chunks, &g);
        if stopped.into_inner() {
            STOPPED.with(|s| s.set(true));
        }
    } else {
        split(units, threads, chunks, &f);
    }
}

/// Runs `f(i, row)` on every `row_len`-byte row `i` of `data` (a trailing partial row
/// is left alone), the rows split over `threads` tasks as [`par_chunks`] splits units.
pub(crate) fn par_rows(
    data: &mut [u8],
    row_len: usize,
    threads: usize,
    f: impl Fn(usize, &mut [u8]) + Sync,
) {
    struct Rows(*mut u8);
    // SAFETY: tasks touch disjoint rows of the buffer, which outlives the split.
    unsafe impl Sync for Rows {}
    impl Rows {
        fn get(&self) -> *mut u8 {
            self.0
        }
    }
    let rows = data.len().checked_div(row_len).unwrap_or(0);
    let base = Rows(data.as_mut_ptr());
    par_chunks(rows, threads, 0, (rows * row_len) as u64, |r| {
        for i in r {
            // SAFETY: `i < rows`, so the row lies inside `data`; every row index is in
            // exactly one chunk, so no two tasks hold the same row.
            let row =
                unsafe { core::slice::from_raw_parts_mut(base.get().add(i * row_len), row_len) };
            f(i, row);
        }
    });
}

/// [`par_chunks`]' split of `0..units` into `chunks` claimed by `threads` tasks.
fn split(units: usize, threads: usize, chunks: usize, f: &(dyn Fn(Range<usize>) + Sync)) {
    // SAFETY: only the lifetime is erased. Pool tasks call `f` only after claiming a
    // chunk (`claim` below) and before counting it done, and this function returns only
    // after every chunk is counted done, so no call outlives the borrow.
    let f: *const (dyn Fn(Range<usize>) + Sync + 'static) = unsafe { core::mem::transmute(f) };
    let sh = Arc::new(Shared {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        chunks,
        units,
        f,
    });
    // A caller outside any rayon pool (a direct call of the kernels) keeps its helpers
    // spinning between calls; inside a pool (a `Plan` run) the plan's own policy
    // (`PlanOptions::spin`) decides whether idle workers spin.
    let team = match rayon::current_thread_index() {
        None => Some(TEAM.with(Arc::clone)),
        Some(_) => None,
    };
    for _ in 1..threads {
        match &team {
            Some(team) if team.reserve() => team.post(sh.clone()),
            _ => {
                let (sh, team) = (sh.clone(), team.clone());
                rayon::spawn(move || {
                    sh.work();
                    drop(sh);
                    if let Some(team) = team {
                        team.spin();
                    }
                });
            }
        }
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sh.work()));
    // No chunk can be claimed after this; wait for the claimed ones (all of them unless
    // `f` panicked here) to finish, so no task uses `f` after we return or unwind.
    let claimed = sh.next.fetch_max(chunks, Ordering::AcqRel).min(chunks);
    while sh.done.load(Ordering::Acquire) < claimed {
        std::thread::yield_now();
    }
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

/// How long a pool task that finished its part of a split made by a thread outside any
/// rayon pool keeps spinning for that thread's next split before it returns to rayon's
/// pool, where an idle thread soon sleeps: waking a sleeping thread takes tens of
/// microseconds on a virtual machine, as long as a whole 3×3 convolution of a
/// mid-sized layer. onnxruntime's pool threads spin between operators in the same way.
/// (A `Plan` run calls the kernels from inside its pool and keeps its workers awake
/// itself, or not, as `PlanOptions::spin` says.)
const SPIN: std::time::Duration = std::time::Duration::from_micros(200);

thread_local! {
    /// The pool tasks spinning for this thread's next split.
    static TEAM: Arc<Team> = Arc::new(Team::default());
}

/// The pool tasks that stay spinning between one caller thread's splits.
///
/// Invariant: the spinning tasks number at least `idle` plus the jobs in `queue`; a
/// task leaves only by taking one from `idle`, and a job is posted only after taking
/// one from `idle` ([`Team::reserve`]), so a posted job always finds a task. A job
/// taken late is harmless: its chunks are claimed by then, and it does nothing.
#[derive(Default)]
struct Team {
    idle: AtomicUsize,
    pending: AtomicUsize,
    queue: std::sync::Mutex<Vec<Arc<Shared>>>,
}

impl Team {
    /// Takes one idle spinning task for a job, if there is one.
    fn reserve(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |k| k.checked_sub(1))
            .is_ok()
    }

    /// Hands a job to the task taken by [`Team::reserve`].
    fn post(&self, job: Arc<Shared>) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        self.pending.fetch_add(1, Ordering::Release);
    }

    /// Spins, running posted jobs (and any other rayon work of the pool, so that
    /// nothing waits on this thread), until [`SPIN`] passes without a job.
    fn spin(&self) {
        'idle: loop {
            self.idle.fetch_add(1, Ordering::AcqRel);
            let mut until = std::time::Instant::now() + SPIN;
            loop {
                if self.pending.load(Ordering::Acquire) > 0 {
                    let job = self.queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    if let Some(job) = job {
                        self.pending.fetch_sub(1, Ordering::AcqRel);
                        job.work();
                        continue 'idle;
                    }
                }
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => {
                        until = std::time::Instant::now() + SPIN;
                        continue;
                    }
                    _ => core::hint::spin_loop(),
                }
                if std::time::Instant::now() >= until && self.reserve() {
                    return;
                }
            }
        }
    }
}

/// Increments a counter when dropped.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// The state shared by the tasks of one [`par_chunks`] call.
struct Shared {
    next: AtomicUsize,
    done: AtomicUsize,
    chunks: usize,
    units: usize,
    f: *const (dyn Fn(Range<usize>) + Sync + 'static),
}

// SAFETY: `f` points to a `Sync` closure and is only called while its owner waits
// (see `par_chunks`); the counters are atomics.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// Claims and runs chunks until none is left. A panic in `f` on a pool thread
    /// aborts the process (rayon's default for `spawn`), so the owner cannot wait
    /// forever for a chunk.
    fn work(&self) {
        loop {
            let c = self.next.fetch_add(1, Ordering::Relaxed);
            if c >= self.chunks {
                return;
            }
            // Counts the chunk done when it finishes or unwinds.
            let _done = Done(&self.done);
            // SAFETY: chunk c is claimed and not yet counted done, so the owner of `f`
            // is still waiting in `par_chunks`.
            let f = unsafe { &*self.f };
            f(self.units * c / self.chunks..self.units * (c + 1) / self.chunks);
        }
    }
}

/// An implicit im2col matrix for an indirect convolution: row `m` (output pixel) and
/// kernel tap `t` read `cig` consecutive bytes of an NHWC image (mapped to u8), or of
/// `zpad` (the input zero point) where the tap falls into the padding.
pub(crate) struct Indirect {
    pub(crate) x: *const u8,
    pub(crate) zpad: *const u8,
    /// Image height, width and channels.
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) c_in: usize,
    /// First channel of the group and channels per group.
    pub(crate) c0: usize,
    pub(crate) cig: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) strides: [usize; 2],
    pub(crate) dilations: [usize; 2],
    /// Top and left padding.
    pub(crate) pad_tl: [usize; 2],
    /// Output width.
    pub(crate) ow: usize,
}

// SAFETY: read-only pointers into buffers that outlive the parallel section.
unsafe impl Sync for Indirect {}

/// The blocked loop of an indirect convolution over m-tiles `mt` and n-panels `np`.
///
/// # Safety
/// `ind` must describe a valid image and padding vector, `job.b` packed B with
/// `K = kh·kw·cig` (`cig` a multiple of the kernel's k-step), and the output must be
/// writable for the tiles.
#[inline(always)]
pub(crate) unsafe fn block_loop_ind<T: Tile>(
    job: &Job<'_>,
    ind: &Indirect,
    mt: Range<usize>,
    np: Range<usize>,
) {
    let mut buf = [0i32; MAX_TILE];
    let taps = ind.kh * ind.kw;
    let mut ap = vec![core::ptr::null::<u8>(); T::MR * taps];
    for t in mt {
        let m0 = t * T::MR;
        let rows = T::MR.min(job.m - m0);
        for r in 0..rows {
            let (oy, ox) = ((m0 + r) / ind.ow, (m0 + r) % ind.ow);
            for ky in 0..ind.kh {
                let iy =
                    (oy * ind.strides[0] + ky * ind.dilations[0]) as isize - ind.pad_tl[0] as isize;
                for kx in 0..ind.kw {
                    let ix = (ox * ind.strides[1] + kx * ind.dilations[1]) as isize
                        - ind.pad_tl[1] as isize;
                    let inside =
                        iy >= 0 && ix >= 0 && (iy as usize) < ind.h && (ix as usize) < ind.w;
                    ap[r * taps + ky * ind.kw + kx] = if inside {
                        let off = (iy as usize * ind.w + ix as usize) * ind.c_in + ind.c0;
                        // SAFETY: (iy, ix) is inside the image; `cig` channels from c0 fit.
                        unsafe { ind.x.add(off) }
                    } else {
                        ind.zpad
                    };
                }
            }
        }
        for p in np.clone() {
            let n0 = p * T::NR;
            let cols = T::NR.min(job.n - n0);
            // SAFETY: panel p lies inside packed B.
            let b = unsafe { job.b.add(p * job.kp * T::NR * T::ESZ) };
            // SAFETY: every pointer has `cig` readable bytes (caller's contract).
            unsafe { T::tile(rows, taps, ind.cig, ap.as_ptr(), b, &mut buf) };
            // SAFETY: forwarded contract.
            unsafe { finish_tile(job, &mut buf, T::NR, m0, rows, n0, cols) };
        }
    }
}

/// Runs an indirect convolution job, splitting m-tiles over `threads` tasks. Returns
/// `false` (doing nothing) if `isa` has no indirect kernel.
pub(crate) fn run_indirect(isa: Isa, job: &Job<'_>, ind: &Indirect, threads: usize) -> bool {
    if !super::has_indirect(isa) {
        return false;
    }
    let g = isa.geom();
    let mtiles = job.m.div_ceil(g.mr);
    let panels = job.n.div_ceil(g.nr);
    if mtiles == 0 || panels == 0 {
        return true;
    }
    let work = job.m as u64 * job.n as u64 * job.kp as u64;
    par_chunks(mtiles, threads, 0, work, |mt| {
        // SAFETY: chunks cover disjoint m-tiles of a job validated by the caller.
        unsafe { super::run_block_ind(isa, job, ind, mt, 0..panels) };
    });
    true
}

#[cfg(test)]
mod stop_tests {
    use super::{par_chunks, with_stop};
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts how often each unit of `0..units` is visited by `par_chunks`.
    fn visits(units: usize, threads: usize) -> Vec<usize> {
        let seen: Vec<AtomicUsize> = (0..units).map(|_| AtomicUsize::new(0)).collect();
        par_chunks(units, threads, 0, u64::MAX, |r| {
            for u in r {
                seen[u].fetch_add(1, Ordering::Relaxed);
            }
        });
        seen.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn a_stop_that_never_fires_changes_nothing() {
        for threads in [1, 2, 3] {
            let (v, stopped) = with_stop(Arc::new(|| false), || visits(100, threads));
            assert!(!stopped);
            assert!(v.iter().all(|&n| n == 1), "{threads} threads: {v:?}");
        }
    }

    #[test]
    fn a_stop_skips_the_remaining_chunks_even_on_one_thread() {
        for threads in [1, 2] {
            let polls = AtomicUsize::new(0);
            let polls = Arc::new(polls);
            let p = polls.clone();
            // Fires from the third poll on.
            let stop = Arc::new(move || p.fetch_add(1, Ordering::Relaxed) >= 2);
            let (v, stopped) = with_stop(stop, || visits(64, threads));
            assert!(stopped, "{threads} threads");
            let done: usize = v.iter().sum();
            assert!(v.iter().all(|&n| n <= 1), "{v:?}");
            assert!(
                done > 0 && done < 64,
                "{threads} threads: {done} of 64 units ran"
            );
        }
        // Outside `with_stop` nothing polls: everything runs once, on one thread too.
        assert!(visits(64, 1).iter().all(|&n| n == 1));
    }

    #[test]
    fn the_stop_is_removed_when_the_call_unwinds() {
        let r = std::panic::catch_unwind(|| {
            with_stop(Arc::new(|| true), || -> () { panic!("an operator bug") })
        });
        assert!(r.is_err());
        // A stale stop that always fires would skip every unit here.
        assert!(visits(16, 2).iter().all(|&n| n == 1));
        let (v, stopped) = with_stop(Arc::new(|| false), || visits(16, 1));
        assert!(!stopped && v.iter().all(|&n| n == 1));
    }
}

#[cfg(test)]
mod team_tests {
    use super::{par_chunks, par_rows};
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// Splits from threads outside the pool, back to back (so that spinning helpers
    /// take the jobs) and from several callers at once: every unit runs exactly once.
    #[test]
    fn back_to_back_splits_from_several_callers_run_every_unit_once() {
        std::thread::scope(|s| {
            for caller in 0..3 {
                s.spawn(move || {
                    for round in 0..300 {
                        let units = 1 + (round * 7 + caller) % 97;
                        let seen: Vec<AtomicUsize> =
                            (0..units).map(|_| AtomicUsize::new(0)).collect();
                        par_chunks(units, 2 + round % 2, 0, u64::MAX, |r| {
                            for u in r {
                                seen[u].fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        for (u, n) in seen.iter().enumerate() {
                            assert_eq!(
                                n.load(Ordering::Relaxed),
                                1,
                                "caller {caller} round {round} unit {u}"
                            );
                        }
                    }
                });
            }
        });
    }

    #[test]
    fn par_rows_hands_every_full_row_to_exactly_one_call() {
        for (len, row, threads) in [
            (0, 4, 2),
            (10, 3, 2),
            (4096, 64, 2),
            (4096, 64, 1),
            (100, 7, 3),
        ] {
            let mut data = vec![0u8; len];
            par_rows(&mut data, row, threads, |i, r| {
                assert_eq!(r.len(), row);
                for b in r.iter_mut() {
                    *b = b.wrapping_add(1 + (i % 200) as u8);
                }
            });
            let full = len / row * row;
            for (j, &b) in data.iter().enumerate() {
                let want = if j < full {
                    1 + (j / row % 200) as u8
                } else {
                    0
                };
                assert_eq!(b, want, "len {len} row {row} byte {j}");
            }
        }
    }
}
