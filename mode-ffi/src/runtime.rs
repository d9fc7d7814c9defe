//! `mode_runtime_*`: IO threads and one callback dispatcher shared by many clients. A gateway
//! or a load generator runs thousands of devices in one process this way: each device costs its
//! engine and its socket, not a runtime and a thread of its own. A client made with
//! ::mode_client_new gets a private runtime of one IO thread, the same code with one device.
//!
//! The dispatcher is one thread that runs every callback of every client of the runtime, in
//! order per client. It waits for the next item of any client's feed (a stream of that client's
//! notifications and outcomes) outside any callback, then runs the callback with no lock held.
//! It never runs on an IO thread, so a slow callback delays other callbacks but never a
//! connection: keepalives, acknowledgements and reconnects go on.

use std::cell::Cell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};

use futures_util::stream::{SelectAll, Stream, StreamExt};
use tokio::sync::mpsc;

use crate::util::{borrow, fail, write_new};
use crate::{ModeStatus, ffi_guard};

/// One client's items for the dispatcher, ending when the client is done with callbacks.
pub(crate) type Feed = Pin<Box<dyn Stream<Item = Work> + Send>>;

/// A callback to run (or a client to finish), as a closure the dispatcher calls.
pub(crate) type Work = Box<dyn FnOnce() + Send>;

/// IO threads and one callback dispatcher for many clients (see ::mode_client_new_in).
pub struct ModeRuntime {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    runtime: Mutex<Option<mode_client::Runtime>>,
    handle: tokio::runtime::Handle,
    /// New clients' feeds for the dispatcher; `None` once the runtime is shut down, which ends
    /// the dispatcher when its last feed ends.
    feeds: Mutex<Option<mpsc::UnboundedSender<Feed>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Names this runtime's dispatcher thread (see [`DISPATCHER`]).
    id: u64,
    /// Clients made in this runtime and not yet freed.
    pub(crate) clients: AtomicUsize,
}

impl Shared {
    /// A runtime of `io_threads` IO threads and its dispatcher thread.
    pub(crate) fn new(io_threads: usize) -> Result<Arc<Shared>, ModeStatus> {
        let tokio = mode_client::Runtime::tokio_builder(io_threads)
            .on_thread_start(ignore_sigpipe_on_this_thread)
            .build()
            .map_err(|err| fail(ModeStatus::ModeErrConnection, format!("no runtime: {err}")))?;
        let (feeds, incoming) = mpsc::unbounded_channel();
        static RUNTIMES: AtomicU64 = AtomicU64::new(1);
        let id = RUNTIMES.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            handle: tokio.handle().clone(),
            runtime: Mutex::new(Some(mode_client::Runtime::from_tokio(tokio))),
            feeds: Mutex::new(Some(feeds)),
            dispatcher: Mutex::new(None),
            id,
            clients: AtomicUsize::new(0),
        });
        let thread = std::thread::Builder::new()
            .name("mode-callbacks".into())
            .spawn(move || {
                DISPATCHER.set(id);
                dispatch(incoming)
            })
            .map_err(|err| {
                fail(
                    ModeStatus::ModeErrConnection,
                    format!("no callback thread: {err}"),
                )
            })?;
        *lock(&shared.dispatcher) = Some(thread);
        Ok(shared)
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// The mode-client runtime, while this one runs.
    pub(crate) fn client_runtime(&self) -> Result<mode_client::Runtime, ModeStatus> {
        lock(&self.runtime).clone().ok_or_else(|| {
            fail(
                ModeStatus::ModeErrInvalidState,
                "the runtime is shut down: make the client in a live runtime",
            )
        })
    }

    /// Hands a client's feed to the dispatcher.
    pub(crate) fn add_feed(&self, feed: Feed) -> Result<(), ModeStatus> {
        let refused = || {
            fail(
                ModeStatus::ModeErrInvalidState,
                "the runtime is shut down: its dispatcher takes no more clients",
            )
        };
        match lock(&self.feeds).as_ref() {
            Some(feeds) => feeds.send(feed).map_err(|_| refused()),
            None => Err(refused()),
        }
    }

    pub(crate) fn on_dispatcher(&self) -> bool {
        DISPATCHER.get() == self.id
    }

    /// Stops the IO threads (which ends the connections of any client left) and lets the
    /// dispatcher end once its last feed has; waits for it unless called from it.
    pub(crate) fn shut_down(&self) {
        lock(&self.feeds).take();
        // Dropping the last mode-client handle stops the IO threads (within a second).
        lock(&self.runtime).take();
        if !self.on_dispatcher()
            && let Some(thread) = lock(&self.dispatcher).take()
        {
            let _ = thread.join();
        }
    }
}

thread_local! {
    /// The id of the runtime whose dispatcher this thread is (0: none). A plain number, not the
    /// thread's `Thread` handle: asking for that on the application's main thread allocates one
    /// that is never freed.
    static DISPATCHER: Cell<u64> = const { Cell::new(0) };
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A C program, unlike a Rust one, does not ignore SIGPIPE, and a write to a socket the peer
/// closed (the cloud dropping the connection) would raise it and kill the program. Blocked on
/// the runtime's threads, where every socket write happens, it stays pending there and the
/// write fails with EPIPE, which the connection task handles as a lost connection. The
/// application's own threads and handlers are untouched.
fn ignore_sigpipe_on_this_thread() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The dispatcher thread: runs the next item of any feed, until the runtime is shut down and
/// every feed has ended.
fn dispatch(mut incoming: mpsc::UnboundedReceiver<Feed>) {
    let mut feeds: SelectAll<Feed> = SelectAll::new();
    let mut open = true;
    loop {
        let next = block_on(std::future::poll_fn(|cx| {
            while open {
                match incoming.poll_recv(cx) {
                    Poll::Ready(Some(feed)) => feeds.push(feed),
                    Poll::Ready(None) => open = false,
                    Poll::Pending => break,
                }
            }
            match feeds.poll_next_unpin(cx) {
                Poll::Ready(Some(work)) => Poll::Ready(Some(work)),
                Poll::Ready(None) if !open => Poll::Ready(None),
                _ => Poll::Pending,
            }
        }));
        let Some(work) = next else { return };
        work();
    }
}

/// Wakes the dispatcher thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to its end on this thread. The dispatcher waits this way rather than in a
/// tokio runtime: its wait must outlive the runtime's IO threads when the runtime shuts down
/// before the last callbacks ran, and a callback may call `block_on` of the runtime itself.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Creates a runtime with `io_threads` IO threads (0 counts as 1) and one callback dispatcher
/// thread into `*out`. One IO thread carries thousands of idle devices.
///
/// # Safety
/// `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_runtime_new(
    io_threads: usize,
    out: *mut *mut ModeRuntime,
) -> ModeStatus {
    ffi_guard!({
        unsafe {
            write_new(out, || {
                Ok(ModeRuntime {
                    shared: Shared::new(io_threads)?,
                })
            })
        }
    })
}

/// Frees a runtime after every client made in it was freed: its threads end before this
/// returns. While a client of it is not freed, or from one of its callbacks, returns
/// MODE_ERR_INVALID_STATE and changes nothing. NULL is a no-op.
///
/// # Safety
/// `runtime` NULL or from ::mode_runtime_new, not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mode_runtime_free(runtime: *mut ModeRuntime) -> ModeStatus {
    ffi_guard!({
        if runtime.is_null() {
            return Ok(());
        }
        let shared = &unsafe { borrow(runtime) }?.shared;
        let clients = shared.clients.load(Ordering::Acquire);
        if clients > 0 {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                format!("{clients} clients of this runtime are not freed: free them first"),
            ));
        }
        if shared.on_dispatcher() {
            return Err(fail(
                ModeStatus::ModeErrInvalidState,
                "a runtime cannot be freed from one of its callbacks",
            ));
        }
        let runtime = unsafe { Box::from_raw(runtime) };
        runtime.shared.shut_down();
        Ok(())
    })
}
