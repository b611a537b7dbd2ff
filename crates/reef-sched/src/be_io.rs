//! The BE host I/O worker: a thread beside the scheduling thread that
//! writes BE tasks' inputs and reads their outputs, so that the scheduling
//! thread notices RT arrivals while they run. On the H100 a BE task's
//! output read took bert_base 174-236 us (its 393 KB hidden state) and an
//! image model's input write 57-110 us, all of it time in which the
//! scheduling thread saw no RT request: with bert_base as BE work RT's
//! queueing p99 was 214-321 us against 98-155 alone (docs/PERF.md,
//! Session 28). RT tasks keep their I/O on the scheduling thread (it is on
//! their own path).
//!
//! Jobs run one at a time in the order given. After each job the worker
//! keeps polling for the next for `spin` (the scheduling thread's
//! [`SchedConfig::idle_spin`](crate::SchedConfig::idle_spin)), pausing as
//! that thread does, before it sleeps: a BE task's hand-offs then skip the
//! thread's wake-up. A started task comes back
//! through [`BeIo::started`] with its queue; a task that fails to start or
//! whose client went away is answered here and comes back as `None`. A
//! finished task is answered here. [`BeIo::shutdown`] waits until every job
//! given is done, so nothing accepted goes unanswered.

use crate::config::PollPause;
use crate::task::Task;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Job {
    /// Take a context and write the inputs of the task of BE queue `q`.
    Start(usize, Box<Task>),
    /// Read the outputs and answer.
    Finish(Box<Task>),
}

/// The worker thread and its channels.
pub(crate) struct BeIo {
    jobs: Option<Sender<Job>>,
    started: Receiver<(usize, Option<Box<Task>>)>,
    thread: Option<JoinHandle<()>>,
}

impl BeIo {
    /// Starts the worker thread, polling `spin` after each job with
    /// `pause` between looks.
    pub fn new(pause: PollPause, spin: Duration) -> std::io::Result<BeIo> {
        let (jobs, rx) = unbounded::<Job>();
        let (done, started) = unbounded();
        let thread = std::thread::Builder::new()
            .name("reef-be-io".into())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    let job = match rx.try_recv() {
                        Ok(job) => job,
                        Err(TryRecvError::Empty) if last.elapsed() < spin => {
                            pause.pause();
                            continue;
                        }
                        Err(TryRecvError::Empty) => match rx.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                        Err(TryRecvError::Disconnected) => break,
                    };
                    match job {
                        Job::Start(q, mut t) => {
                            let t = if t.cancelled() {
                                None
                            } else {
                                match t.start() {
                                    Ok(()) => Some(t),
                                    Err(e) => {
                                        t.fail(e, false);
                                        None
                                    }
                                }
                            };
                            // The scheduler outlives the worker's jobs
                            // (shutdown joins this thread first).
                            let _ = done.send((q, t));
                        }
                        Job::Finish(t) => {
                            t.finish();
                        }
                    }
                    last = Instant::now();
                }
            })?;
        Ok(BeIo {
            jobs: Some(jobs),
            started,
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The worker only stops once `jobs` is dropped (in `shutdown`).
            let _ = jobs.send(job);
        }
    }

    /// Has the worker start `t`, the task of BE queue `q` (already taken
    /// off its queue).
    pub fn start(&self, q: usize, t: Task) {
        self.send(Job::Start(q, Box::new(t)));
    }

    /// Has the worker read `t`'s outputs and answer it (already counted
    /// complete).
    pub fn finish(&self, t: Task) {
        self.send(Job::Finish(Box::new(t)));
    }

    /// The tasks started since the last call, with their queues (`None`:
    /// the task was answered without starting).
    pub fn started(&self) -> impl Iterator<Item = (usize, Option<Task>)> + '_ {
        self.started.try_iter().map(|(q, t)| (q, t.map(|t| *t)))
    }

    /// Waits until every job given is done.
    pub fn shutdown(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the BE I/O worker panicked");
            }
        }
    }
}

impl Drop for BeIo {
    fn drop(&mut self) {
        self.shutdown();
    }
}
