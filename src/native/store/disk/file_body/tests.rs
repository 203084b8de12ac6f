//! The stored object's body: every byte from the position it was opened at, in chunks no larger
//! than `READ_CHUNK`, whichever way each chunk was read.
use super::*;
use http_body_util::BodyExt;
use std::io::{Seek, Write};

/// A file of `header` bytes then `length` bytes of content, positioned after the header.
fn stored(name: &str, header: usize, length: usize) -> (std::fs::File, Vec<u8>) {
    let path = std::env::temp_dir().join(format!("file-body-{name}-{}", std::process::id()));
    let content: Vec<u8> = (0..length).map(|i| (i * 7 % 251) as u8).collect();
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&vec![b'#'; header]).unwrap();
    file.write_all(&content).unwrap();
    drop(file);
    let mut file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    file.seek(std::io::SeekFrom::Start(header as u64)).unwrap();
    (file, content)
}

async fn frames(file: std::fs::File) -> Vec<Bytes> {
    let mut body = file_body(file);
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_the_file_from_its_position_to_its_end() {
    let length = 2 * READ_CHUNK + READ_CHUNK / 2 + 13;
    let (file, content) = stored("whole", 41, length);
    let frames = frames(file).await;
    assert!(frames.len() >= 3, "{} frames", frames.len());
    assert!(frames
        .iter()
        .all(|f| !f.is_empty() && f.len() <= READ_CHUNK));
    assert_eq!(frames.concat(), content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_with_nothing_after_its_header_is_an_empty_body() {
    let (file, _) = stored("empty", 30, 0);
    assert!(frames(file).await.is_empty());
}

#[test]
fn a_read_that_waits_for_the_disk_takes_a_chunk_at_its_offset_and_nothing_at_the_end() {
    let (file, content) = stored("pool", 5, READ_CHUNK + 100);
    let first = read_chunk(&file, 5).unwrap();
    assert_eq!(&first[..], &content[..READ_CHUNK]);
    let last = read_chunk(&file, (5 + READ_CHUNK) as u64).unwrap();
    assert_eq!(&last[..], &content[READ_CHUNK..]);
    assert!(read_chunk(&file, (5 + READ_CHUNK + 100) as u64)
        .unwrap()
        .is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn a_read_from_memory_answers_at_once_or_says_it_cannot() {
    let (file, content) = stored("cached", 9, 1000);
    // Just written: the page cache holds it, unless the kernel cannot tell (then `None`).
    if let Some(chunk) = read_cached(&file, 9) {
        assert_eq!(&chunk.unwrap()[..], &content[..]);
    }
    assert!(
        read_cached(&file, 9 + 1000).is_none(),
        "the end goes to the pool"
    );
}
