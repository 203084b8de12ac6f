//! The thread that writes one object's file: its file system calls in order, off the async
//! threads, one object a thread, ended with the object.
//!
//! It runs at the clients' own priority: the clients of a blob being filled read what it has
//! written (`growing`), so its pace is theirs. (It once ran at nice 19, when the first client's
//! relay ran ahead of it and a store left behind caught up later; a writer that every client
//! waits for must not be the last to get the CPU.)

use std::sync::mpsc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A low-priority thread running one object's file system calls in order.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start() -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".to_string())
            .spawn(move || {
                // Ends when the object's fill is gone and its last job done.
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

#[cfg(test)]
mod tests;
