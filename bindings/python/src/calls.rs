//! How a call of `mode._mode.Client` (client.rs) runs: one device's shared state (`Inner`), and
//! the two ways a call that does not finish at once ends. Without `on_done` it waits here with
//! the GIL released; with `on_done` it goes on on the IO runtime, which calls `on_done(ok,
//! value)` when it ends (how `AsyncDevice` completes an asyncio future). Queued sends also
//! report their outcome to `on_delivered` through the runtime's dispatcher.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mode_client::{Client as CoreClient, ClientConfig, ClientError, Delivery, FullQueuePolicy};
use pyo3::prelude::*;
use tokio::sync::Notify;

use crate::errors::{client_error, raise};
use crate::runtime::{Job, Shared, Slot, until_set};

/// How often a blocking wait comes back to check for Ctrl-C: the wait blocks in tokio with the
/// GIL released, where Python's signal handler cannot run, so it returns to run it
/// (`check_signals`). Not a synchronisation: the wait ends as soon as its future does, or the
/// device or its runtime starts closing.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Turns a call's result into the Python value handed back.
pub(crate) type Convert<T> = fn(Python<'_>, T) -> PyResult<Py<PyAny>>;

/// The `Convert` of calls that return None.
pub(crate) fn none(py: Python<'_>, (): ()) -> PyResult<Py<PyAny>> {
    Ok(py.None())
}

/// One device's state, shared by the Python object and the tasks it spawned.
pub(crate) struct Inner {
    pub(crate) rt: Arc<Shared>,
    /// The configuration until `start` takes it.
    pub(crate) config: Mutex<Option<ClientConfig>>,
    pub(crate) client: OnceLock<CoreClient>,
    pub(crate) full_queue: FullQueuePolicy,
    pub(crate) stopping: AtomicBool,
    /// Wakes the blocking waits once `stopping` is set.
    halted: Notify,
    /// Set once `shutdown` ran.
    pub(crate) closed: AtomicBool,
    /// Ends the move of notifications to the dispatcher.
    pub(crate) stop: Arc<Notify>,
    pub(crate) slot: OnceLock<Arc<Slot>>,
}

/// Counts one blocking wait for as long as it lives.
struct WaitGuard<'a>(&'a Shared);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.waits.update(|waits| *waits -= 1);
    }
}

impl Inner {
    pub(crate) fn new(rt: Arc<Shared>, config: ClientConfig, full_queue: FullQueuePolicy) -> Self {
        Inner {
            rt,
            config: Mutex::new(Some(config)),
            client: OnceLock::new(),
            full_queue,
            stopping: AtomicBool::new(false),
            halted: Notify::new(),
            closed: AtomicBool::new(false),
            stop: Arc::new(Notify::new()),
            slot: OnceLock::new(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.rt.is_closed()
    }

    /// Stops handing notifications over, without waiting (the object is being dropped).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.halted.notify_waiters();
        self.stop.notify_one();
    }

    /// Waits for `fut` with the GIL released, checking for signals every 100 ms. Fails with
    /// `ClosedError` as soon as the device or its runtime starts closing, so no wait outlives
    /// the IO threads.
    fn wait<F>(&self, py: Python<'_>, fut: F) -> PyResult<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.rt.waits.update(|waits| *waits += 1);
        let _guard = WaitGuard(&self.rt);
        let mut fut = pin!(fut);
        let mut halted = pin!(async {
            tokio::select! {
                () = until_set(&self.stopping, &self.halted) => {}
                () = self.rt.closed() => {}
            }
        });
        loop {
            let step = py.detach(|| {
                self.rt.handle.block_on(async {
                    let either = async {
                        tokio::select! {
                            biased;
                            () = halted.as_mut() => None,
                            output = fut.as_mut() => Some(output),
                        }
                    };
                    tokio::time::timeout(SIGNAL_CHECK, either).await
                })
            });
            match step {
                Ok(Some(output)) => return Ok(output),
                Ok(None) => {
                    return Err(raise(
                        py,
                        "ClosedError",
                        ("the device was closed while waiting",),
                    ));
                }
                Err(_) => py.check_signals()?,
            }
        }
    }

    /// Ends the move of notifications and waits until the dispatcher handed over the last
    /// one (not on the dispatcher itself: from a handler it returns at once). Idempotent.
    pub(crate) fn shutdown(&self, py: Python<'_>, handover: Duration) {
        self.stop();
        if !self.closed.swap(true, Ordering::AcqRel)
            && !handover.is_zero()
            && !self.rt.on_dispatcher()
            && let Some(slot) = self.slot.get()
        {
            self.rt.wait_finished(py, slot, handover);
        }
    }

    /// Runs `fut` to completion: here with the GIL released, or (with `on_done`) on the IO
    /// runtime, calling `on_done(ok, value)` when it ends.
    pub(crate) fn run<T, F>(
        &self,
        py: Python<'_>,
        fut: F,
        on_done: Option<Py<PyAny>>,
        convert: Convert<T>,
    ) -> PyResult<Py<PyAny>>
    where
        F: Future<Output = Result<T, ClientError>> + Send + 'static,
        T: Send + 'static,
    {
        match on_done {
            None => match self.wait(py, fut)? {
                Ok(value) => convert(py, value),
                Err(err) => Err(client_error(py, err)),
            },
            Some(cb) if self.stopping.load(Ordering::SeqCst) => {
                let closed = raise(py, "ClosedError", ("the device is closed",));
                cb.call1(py, (false, closed.into_value(py)))?;
                Ok(py.None())
            }
            Some(cb) => {
                self.rt.handle.spawn(async move {
                    let outcome = fut.await;
                    // None: the interpreter is shutting down and nobody awaits any more.
                    let _ = Python::try_attach(|py| complete(py, &cb, outcome, convert));
                });
                Ok(py.None())
            }
        }
    }

    /// Queues a message: the future completes on its first poll unless the queue is full
    /// under the Block policy, when it waits (here, or on the runtime with `on_done`).
    /// With `on_delivered`, a task on the IO runtime awaits the message's outcome and queues
    /// the call for the dispatcher (a task only for the messages someone asked about).
    /// Returns True when the message is queued, False when `on_done` will say.
    pub(crate) fn queue<F>(
        &self,
        py: Python<'_>,
        fut: F,
        on_done: Option<Py<PyAny>>,
        on_delivered: Option<Py<PyAny>>,
    ) -> PyResult<bool>
    where
        F: Future<Output = Result<Delivery, ClientError>> + Send + 'static,
    {
        let started = Instant::now();
        let rt = self.rt.clone();
        let track = move |delivery: Delivery| {
            if let Some(callback) = on_delivered {
                let jobs = rt.jobs.clone();
                rt.handle.spawn(async move {
                    let outcome = delivery.await;
                    let elapsed = started.elapsed();
                    let job = Job::Delivered {
                        callback,
                        outcome,
                        elapsed,
                    };
                    let _ = jobs.send(job).await;
                });
            }
        };
        let mut fut = Box::pin(fut);
        if let Poll::Ready(outcome) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            track(outcome.map_err(|e| client_error(py, e))?);
            return Ok(true);
        }
        debug_assert_eq!(self.full_queue, FullQueuePolicy::Block);
        let waits_here = on_done.is_none();
        let waited = async move { fut.await.map(track) };
        self.run(py, waited, on_done, none)?;
        Ok(waits_here)
    }
}

fn complete<T>(
    py: Python<'_>,
    cb: &Py<PyAny>,
    outcome: Result<T, ClientError>,
    convert: Convert<T>,
) {
    let (ok, value) = match outcome
        .map_err(|e| client_error(py, e))
        .and_then(|v| convert(py, v))
    {
        Ok(value) => (true, value),
        Err(err) => (false, err.into_value(py).into_any()),
    };
    // A failure here means the event loop is closed: nobody is waiting for the result.
    let _ = cb.call1(py, (ok, value));
}
