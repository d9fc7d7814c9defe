//! `mode.Runtime`: the IO threads and the one dispatcher thread that many devices share. The IO
//! threads never wait for Python: each device's notifications pass through its own bounded,
//! drop-counted channel, and a small task per device moves them, in order, onto the runtime's
//! job queue, which the dispatcher thread empties with Python attached.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use mode_client::{ClientError, Notification, Notifications};
use pyo3::prelude::*;
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};

use crate::errors::{client_error, raise};
use crate::log;

/// Jobs waiting for the dispatcher at most; beyond, a device's mover waits (on the IO runtime,
/// never blocking a thread) and its own channel fills up and counts what it drops.
const JOB_QUEUE: usize = 1024;

/// How long closing a runtime waits for its dispatcher's running handler.
const DISPATCHER_JOIN: Duration = Duration::from_secs(5);

/// How long closing a runtime waits for the blocking waits on other threads to leave.
const WAITS_LEAVE: Duration = Duration::from_secs(2);

/// Jobs handled per attach to Python: amortizes the attach when many devices are busy.
const BATCH: usize = 64;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One device as the dispatcher knows it: where its notifications go.
pub(crate) struct Slot {
    dispatch: Py<PyAny>,
    /// Set by the dispatcher once it handed over everything the device's channel held.
    finished: AtomicBool,
}

/// Work for the dispatcher thread.
pub(crate) enum Job {
    Note(Arc<Slot>, Notification),
    /// The device's last notification was handed over.
    Finished(Arc<Slot>),
    /// A message sent with `on_delivered` was acknowledged, dropped, or given up.
    Delivered {
        callback: Py<PyAny>,
        outcome: Result<(), ClientError>,
        elapsed: Duration,
    },
}

/// A value other threads wait for: each change, made under its lock, wakes them all.
#[derive(Default)]
pub(crate) struct Watched<T> {
    value: Mutex<T>,
    changed: Condvar,
}

impl<T: Copy> Watched<T> {
    fn get(&self) -> T {
        *lock(&self.value)
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut T)) {
        change(&mut lock(&self.value));
        self.changed.notify_all();
    }

    /// Waits up to `limit` until `done(value)`, checked again at each change; the value then.
    fn wait_until(&self, limit: Duration, mut done: impl FnMut(&T) -> bool) -> T {
        let value = lock(&self.value);
        let (value, _) = self
            .changed
            .wait_timeout_while(value, limit, |value| !done(value))
            .unwrap_or_else(|p| p.into_inner());
        *value
    }
}

/// What the dispatcher thread did: the jobs it finished, and whether it ended.
#[derive(Clone, Copy, Default)]
struct Progress {
    jobs: u64,
    ended: bool,
}

/// Returns once `flag` is set; whoever sets it calls `notify.notify_waiters()` after.
pub(crate) async fn until_set(flag: &AtomicBool, notify: &Notify) {
    loop {
        let mut notified = pin!(notify.notified());
        notified.as_mut().enable();
        if flag.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// What devices and the Python object share.
pub(crate) struct Shared {
    /// `None` once closed; owned here (not by mode-client) so a drop during garbage collection
    /// can stop it without waiting.
    tokio: Mutex<Option<tokio::runtime::Runtime>>,
    pub(crate) handle: Handle,
    pub(crate) core: mode_client::Runtime,
    pub(crate) jobs: mpsc::Sender<Job>,
    io_threads: usize,
    closed: AtomicBool,
    /// Wakes the blocking waits (calls.rs) once `closed` is set.
    closing: Notify,
    stop: Arc<Notify>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    dispatcher_id: ThreadId,
    /// The jobs the dispatcher finished and whether it ended: a wait for it wakes at each.
    progress: Arc<Watched<Progress>>,
    /// The jobs done when a wait for the dispatcher gave up (a handler that does not return):
    /// later waits do not wait again while it still sits there. `u64::MAX`: none did.
    stuck_at: AtomicU64,
    /// Blocking waits in progress: the IO threads are stopped only once they left.
    pub(crate) waits: Watched<usize>,
}

impl Shared {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Returns once the runtime is closing.
    pub(crate) async fn closed(&self) {
        until_set(&self.closed, &self.closing).await;
    }

    pub(crate) fn on_dispatcher(&self) -> bool {
        std::thread::current().id() == self.dispatcher_id
    }

    /// Starts moving `notifications` to the dispatcher, which calls `dispatch(kind, payload)`
    /// for each. `stop` ends the move early (what is already queued is still handed over).
    pub(crate) fn attach(
        &self,
        notifications: Notifications,
        dispatch: Py<PyAny>,
        stop: Arc<Notify>,
    ) -> Arc<Slot> {
        let slot = Arc::new(Slot {
            dispatch,
            finished: AtomicBool::new(false),
        });
        self.handle.spawn(forward(
            notifications,
            slot.clone(),
            self.jobs.clone(),
            stop,
        ));
        slot
    }

    /// Waits (GIL released) until the dispatcher handed over the last notification of `slot`,
    /// or it ended, or it ran no job for `limit` (a handler that does not return; remembered,
    /// so closing a thousand devices behind it does not wait a thousand times). Never called
    /// on the dispatcher itself.
    pub(crate) fn wait_finished(&self, py: Python<'_>, slot: &Slot, limit: Duration) -> bool {
        py.detach(|| {
            let mut seen = self.progress.get().jobs;
            loop {
                // Woken at each job the dispatcher finishes (the slot's `Finished` among them)
                // and at its end.
                let now = self.progress.wait_until(limit, |p| {
                    slot.finished.load(Ordering::Acquire)
                        || p.ended
                        || p.jobs != seen
                        || self.stuck_at.load(Ordering::Acquire) == seen
                });
                if slot.finished.load(Ordering::Acquire) {
                    return true;
                }
                if now.ended || self.stuck_at.load(Ordering::Acquire) == seen {
                    return false;
                }
                if now.jobs == seen {
                    self.stuck_at.store(seen, Ordering::Release);
                    return false;
                }
                seen = now.jobs;
            }
        })
    }

    /// Stops the dispatcher (joined unless this is it) and the IO threads. Idempotent.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
        self.stop.notify_one();
        if !self.on_dispatcher()
            && let Some(thread) = lock(&self.dispatcher).take()
        {
            // It ends after the handler it runs returns: waited for, up to a limit (a
            // handler that never returns must not hang the close or the interpreter's exit).
            py.detach(|| {
                if self.progress.wait_until(DISPATCHER_JOIN, |p| p.ended).ended {
                    let _ = thread.join();
                }
            });
        }
        // Waits on other threads end at `closing`; the IO threads stop once they left.
        py.detach(|| self.waits.wait_until(WAITS_LEAVE, |waits| *waits == 0));
        if let Some(tokio) = lock(&self.tokio).take() {
            py.detach(|| tokio.shutdown_timeout(Duration::from_secs(1)));
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last device and the Python object are gone, perhaps inside a garbage collection
        // or on the dispatcher itself: stop everything without waiting for any thread.
        self.closed.store(true, Ordering::Release);
        self.stop.notify_one();
        if let Some(tokio) = lock(&self.tokio).take() {
            tokio.shutdown_background();
        }
    }
}

/// Moves one device's notifications onto the job queue, in order; ends when the device's
/// channel ends (the client closed) or at `stop`, then hands over what is already queued.
async fn forward(
    mut notifications: Notifications,
    slot: Arc<Slot>,
    jobs: mpsc::Sender<Job>,
    stop: Arc<Notify>,
) {
    loop {
        let note = tokio::select! {
            biased;
            _ = stop.notified() => None,
            note = notifications.recv() => note,
        };
        let Some(note) = note else { break };
        if jobs.send(Job::Note(slot.clone(), note)).await.is_err() {
            return;
        }
    }
    while let Some(note) = notifications.try_recv() {
        if jobs.send(Job::Note(slot.clone(), note)).await.is_err() {
            return;
        }
    }
    let _ = jobs.send(Job::Finished(slot)).await;
}

/// Why the dispatcher woke up.
enum Wake {
    Stop,
    Job(Job),
    Log,
}

/// The dispatcher: waits (detached) for the next job, then attaches and runs it and whatever
/// else is waiting (up to a batch). Ends at close, when the runtime is dropped, or when the
/// interpreter is finalizing.
fn dispatch_loop(
    mut jobs: mpsc::Receiver<Job>,
    stop: Arc<Notify>,
    progress: Arc<Watched<Progress>>,
) {
    // No IO or timer here: a driverless current-thread runtime is enough to wait on channels,
    // and it does not depend on the IO runtime's life.
    let waiter = tokio::runtime::Builder::new_current_thread().build();
    if let Ok(waiter) = waiter {
        loop {
            let wake = waiter.block_on(async {
                tokio::select! {
                    biased;
                    _ = stop.notified() => Wake::Stop,
                    job = jobs.recv() => job.map_or(Wake::Stop, Wake::Job),
                    _ = log::ready() => Wake::Log,
                }
            });
            let first = match wake {
                Wake::Stop => {
                    let _ = Python::try_attach(log::drain);
                    break;
                }
                Wake::Log => None,
                Wake::Job(job) => Some(job),
            };
            let attached = Python::try_attach(|py| {
                log::drain(py);
                let mut next = first;
                for _ in 0..BATCH {
                    let Some(job) = next.take() else { break };
                    run(py, job);
                    progress.update(|p| p.jobs += 1);
                    next = jobs.try_recv().ok();
                }
                if let Some(job) = next {
                    run(py, job);
                    progress.update(|p| p.jobs += 1);
                }
            });
            if attached.is_none() {
                break;
            }
        }
    }
    progress.update(|p| p.ended = true);
    // Jobs still queued hold Python objects: dropped without the GIL, pyo3 defers the decrefs.
    drop(jobs);
}

fn run(py: Python<'_>, job: Job) {
    match job {
        Job::Note(slot, note) => crate::notify::deliver(py, &slot.dispatch, note),
        Job::Finished(slot) => slot.finished.store(true, Ordering::Release),
        Job::Delivered {
            callback,
            outcome,
            elapsed,
        } => {
            let error = match outcome {
                Ok(()) => py.None(),
                Err(err) => client_error(py, err).into_value(py).into_any(),
            };
            if let Err(err) = callback.call1(py, (error, elapsed.as_secs_f64())) {
                err.write_unraisable(py, Some(callback.bind(py)));
            }
        }
    }
}

/// IO threads and one callback thread for many devices (the native half of `mode.Runtime`).
#[pyclass(module = "mode._mode", frozen)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
}

#[pymethods]
impl Runtime {
    #[new]
    #[pyo3(signature = (io_threads = 1))]
    fn new(py: Python<'_>, io_threads: usize) -> PyResult<Self> {
        if io_threads == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "io_threads must be at least 1",
            ));
        }
        let failed = |what: &str, e: std::io::Error| {
            raise(py, "ModeError", (format!("cannot start the {what}: {e}"),))
        };
        let tokio = mode_client::Runtime::tokio_builder(io_threads)
            .build()
            .map_err(|e| failed("IO runtime", e))?;
        let handle = tokio.handle().clone();
        let (jobs, receiver) = mpsc::channel(JOB_QUEUE);
        let stop = Arc::new(Notify::new());
        let progress = Arc::new(Watched::default());
        let thread = {
            let (stop, progress) = (stop.clone(), progress.clone());
            std::thread::Builder::new()
                .name("mode-dispatch".into())
                .spawn(move || dispatch_loop(receiver, stop, progress))
                .map_err(|e| failed("dispatcher", e))?
        };
        Ok(Runtime {
            shared: Arc::new(Shared {
                core: mode_client::Runtime::with_handle(handle.clone()),
                handle,
                tokio: Mutex::new(Some(tokio)),
                jobs,
                io_threads,
                closed: AtomicBool::new(false),
                closing: Notify::new(),
                stop,
                dispatcher_id: thread.thread().id(),
                dispatcher: Mutex::new(Some(thread)),
                progress,
                stuck_at: AtomicU64::new(u64::MAX),
                waits: Watched::default(),
            }),
        })
    }

    /// Stops the dispatcher thread and the IO threads; devices still on it stop with them (the
    /// `mode` package closes them first). Idempotent; from a handler it does not wait.
    fn close(&self, py: Python<'_>) {
        self.shared.close(py);
    }

    /// True once `close` ran.
    #[getter]
    fn closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The number of IO threads.
    #[getter]
    fn io_threads(&self) -> usize {
        self.shared.io_threads
    }

    /// True while the dispatcher thread runs.
    #[getter]
    fn dispatcher_running(&self) -> bool {
        !self.shared.progress.get().ended
    }
}
