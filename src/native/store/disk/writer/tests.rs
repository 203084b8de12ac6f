//! The object's writer thread: jobs in order, gone with the writer.
use super::*;

#[tokio::test]
async fn jobs_run_in_order_on_a_thread_that_ends_with_the_writer() {
    let writer = Writer::start().unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = {
        let order = order.clone();
        writer.run(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            order.lock().unwrap().push(1);
            Ok(())
        })
    };
    let second = {
        let order = order.clone();
        writer.run(move || {
            order.lock().unwrap().push(2);
            #[cfg(target_os = "linux")]
            // SAFETY: a plain system call about this thread.
            let thread = unsafe { libc::gettid() };
            #[cfg(not(target_os = "linux"))]
            let thread = 0;
            Ok(thread)
        })
    };
    let ((), thread) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!(*order.lock().unwrap(), [1, 2]);
    let failed = writer.run(|| Err::<(), _>(std::io::Error::other("a full disk")));
    assert_eq!(failed.await.unwrap_err().to_string(), "a full disk");

    drop(writer);
    #[cfg(target_os = "linux")]
    {
        let task = format!("/proc/self/task/{thread}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::path::Path::new(&task).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer's thread outlived it"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let _ = thread;
}
