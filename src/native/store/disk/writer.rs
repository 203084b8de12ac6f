//! The thread that writes one object's file, at the lowest CPU priority.
//!
//! Copying a relayed blob into the page cache costs about as much CPU as relaying it. On a
//! machine whose cores are all busy serving, a writer at the clients' priority takes its share
//! from them and a cold pull gets slower than a relay. At nice 19 it takes what the clients leave:
//! when that is not enough the relay runs ahead, the writer is left behind and catches up on its
//! own (`catch_up`), and the store fills once the machine has time. With an idle core, the
//! priority changes nothing. The nice value is a thread's own on Linux, so the thread is the
//! object's alone (a pool thread would keep it for the hits it serves next); it ends with the
//! object.

use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A low-priority thread running one object's file system calls in order.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start() -> std::io::Result<Writer> {
        Writer::start_with(true)
    }

    /// A writer at the clients' own priority: for a fill that clients read from as it is written
    /// (`growing`), where the writer's pace is theirs.
    pub fn start_for_readers() -> std::io::Result<Writer> {
        Writer::start_with(false)
    }

    fn start_with(nice: bool) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || {
                if nice {
                    lowest_priority();
                }
                // Ends when the object's sink is gone and its last job done.
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        Ok(Writer { jobs })
    }

    /// Runs `job` after the ones before it; its result, or an error if the thread is gone.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Done<T> {
        let (result, done) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = result.send(job());
        });
        let _ = self.jobs.send(job);
        Done(done)
    }
}

/// A job's result to come.
pub struct Done<T>(oneshot::Receiver<std::io::Result<T>>);

impl<T> std::future::Future for Done<T> {
    type Output = std::io::Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|result| {
            result.unwrap_or_else(|_| Err(std::io::Error::other("the store's writer stopped")))
        })
    }
}

/// Nice 19 for the calling thread (Linux; elsewhere the thread keeps its priority).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this thread's own id.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
    }
}

#[cfg(test)]
mod tests;
