//! Where libmode's memory comes from: the system allocator, or the application's own
//! `malloc`/`realloc`/`free` given once with `mode_set_allocator` (firmware with its own heap,
//! a counting allocator in a test). Every Rust allocation of the library goes through here.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::util::fail;
use crate::{ModeStatus, ffi_guard};

/// Allocates `size` bytes (never 0), aligned for any fundamental type as C's `malloc` is; NULL
/// when out of memory.
pub type ModeMallocFn = Option<unsafe extern "C" fn(size: usize) -> *mut c_void>;
/// Resizes a block from the malloc hook to `size` bytes (never 0), as C's `realloc`.
pub type ModeReallocFn = Option<unsafe extern "C" fn(ptr: *mut c_void, size: usize) -> *mut c_void>;
/// Frees a block from the malloc or realloc hook (never NULL), as C's `free`.
pub type ModeFreeFn = Option<unsafe extern "C" fn(ptr: *mut c_void)>;

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);

/// The hooks, once installed (stored before `HOOKED` is set, read after it is seen).
static MALLOC: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static REALLOC: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static FREE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static HOOKED: AtomicBool = AtomicBool::new(false);
/// The system allocator has handed out memory: switching now would free it with the wrong
/// `free`, so hooks are refused from then on.
static USED: AtomicBool = AtomicBool::new(false);

/// The alignment C's `malloc` guarantees (that of `max_align_t`): 16 on x86-64 and AArch64, 8 on
/// 32-bit ARM and Xtensa, as Rust's own `System` allocator assumes.
const MIN_ALIGN: usize = 2 * size_of::<usize>();

/// The system allocator: std's, or without std C's `malloc`, `realloc` and `free`.
#[cfg(feature = "std")]
use std::alloc::System;

#[cfg(not(feature = "std"))]
struct System;

#[cfg(not(feature = "std"))]
#[link(name = "c")]
unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

#[cfg(not(feature = "std"))]
impl System {
    const C: Hooks = Hooks {
        malloc,
        realloc,
        free,
    };
}

#[cfg(not(feature = "std"))]
unsafe impl GlobalAlloc for System {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { Hooked::alloc_with(&System::C, layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Hooked::dealloc_with(&System::C, ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { Hooked::realloc_with(&System::C, ptr, layout, new_size) }
    }
}

/// The library's global allocator: the hooks when installed, else the system allocator.
pub struct Hooked;

#[global_allocator]
static ALLOCATOR: Hooked = Hooked;

struct Hooks {
    malloc: MallocFn,
    realloc: ReallocFn,
    free: FreeFn,
}

fn hooks() -> Option<Hooks> {
    if !HOOKED.load(Ordering::Acquire) {
        return None;
    }
    // SAFETY: set from non-NULL function pointers of these types before HOOKED was released.
    unsafe {
        Some(Hooks {
            malloc: core::mem::transmute::<*mut (), MallocFn>(MALLOC.load(Ordering::Relaxed)),
            realloc: core::mem::transmute::<*mut (), ReallocFn>(REALLOC.load(Ordering::Relaxed)),
            free: core::mem::transmute::<*mut (), FreeFn>(FREE.load(Ordering::Relaxed)),
        })
    }
}

fn note_system_use() {
    if !USED.load(Ordering::Relaxed) {
        USED.store(true, Ordering::Relaxed);
    }
}

/// A block aligned beyond `malloc`'s guarantee: over-allocated, with the pointer `malloc` gave
/// stored in the word just before the aligned one.
unsafe fn alloc_overaligned(hooks: &Hooks, layout: Layout) -> *mut u8 {
    let word = size_of::<usize>();
    let Some(total) = layout.size().checked_add(layout.align() + word) else {
        return core::ptr::null_mut();
    };
    let raw = unsafe { (hooks.malloc)(total) }.cast::<u8>();
    if raw.is_null() {
        return raw;
    }
    let start = raw as usize + word;
    let aligned = (start + layout.align() - 1) & !(layout.align() - 1);
    let offset = aligned - raw as usize;
    unsafe {
        let ptr = raw.add(offset);
        ptr.sub(word).cast::<*mut u8>().write_unaligned(raw);
        ptr
    }
}

unsafe fn free_overaligned(hooks: &Hooks, ptr: *mut u8) {
    let raw = unsafe {
        ptr.sub(size_of::<usize>())
            .cast::<*mut u8>()
            .read_unaligned()
    };
    unsafe { (hooks.free)(raw.cast()) }
}

impl Hooked {
    unsafe fn alloc_with(hooks: &Hooks, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            unsafe { (hooks.malloc)(layout.size()) }.cast()
        } else {
            unsafe { alloc_overaligned(hooks, layout) }
        }
    }

    unsafe fn dealloc_with(hooks: &Hooks, ptr: *mut u8, layout: Layout) {
        if layout.align() <= MIN_ALIGN {
            unsafe { (hooks.free)(ptr.cast()) }
        } else {
            unsafe { free_overaligned(hooks, ptr) }
        }
    }

    unsafe fn realloc_with(
        hooks: &Hooks,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            return unsafe { (hooks.realloc)(ptr.cast(), new_size) }.cast();
        }
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = alloc_overaligned(hooks, new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                free_overaligned(hooks, ptr);
            }
            new
        }
    }
}

unsafe impl GlobalAlloc for Hooked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match hooks() {
            Some(hooks) => unsafe { Hooked::alloc_with(&hooks, layout) },
            None => {
                note_system_use();
                unsafe { System.alloc(layout) }
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match hooks() {
            Some(hooks) => unsafe { Hooked::dealloc_with(&hooks, ptr, layout) },
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match hooks() {
            Some(hooks) => unsafe { Hooked::realloc_with(&hooks, ptr, layout, new_size) },
            None => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}

/// Makes every allocation of the library go through `malloc_fn`, `realloc_fn` and `free_fn`
/// (e.g. a firmware's own heap, or a counting wrapper). They must behave as C's `malloc`,
/// `realloc` and `free` (alignment of `max_align_t`; sizes are never 0; NULL means out of
/// memory, which aborts the program as any Rust allocation failure does) and may be called from
/// any thread that calls the library (libmode's own threads too).
///
/// Call it once, first: before any other libmode call that allocates and before any thread uses
/// the library. Returns MODE_ERR_NULL if any hook is NULL, MODE_ERR_INVALID_STATE once hooks are
/// set or once the library has allocated from the system allocator (memory from one allocator
/// must never go to the other's `free`); nothing changes then. `mode_status_str` and
/// `mode_version` allocate nothing.
#[unsafe(no_mangle)]
pub extern "C" fn mode_set_allocator(
    malloc_fn: ModeMallocFn,
    realloc_fn: ModeReallocFn,
    free_fn: ModeFreeFn,
) -> ModeStatus {
    ffi_guard!({
        let (Some(malloc_fn), Some(realloc_fn), Some(free_fn)) = (malloc_fn, realloc_fn, free_fn)
        else {
            return Err(ModeStatus::ModeErrNull);
        };
        if HOOKED.load(Ordering::Acquire) {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                "mode_set_allocator was already called",
            ));
        }
        if USED.load(Ordering::Relaxed) {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                "libmode already allocated memory with the system allocator: call mode_set_allocator before any other libmode function",
            ));
        }
        MALLOC.store(malloc_fn as *mut (), Ordering::Relaxed);
        REALLOC.store(realloc_fn as *mut (), Ordering::Relaxed);
        FREE.store(free_fn as *mut (), Ordering::Relaxed);
        HOOKED.store(true, Ordering::Release);
        Ok(())
    })
}
