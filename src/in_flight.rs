//! Single flight for the native stores: concurrent misses for one key fetch it upstream once.
//! The first request claims the key; the others wait until that claim is dropped (the object is
//! stored, or the fetch gave up), then look again. Within one process: instances that share a
//! bucket may each fetch a blob once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The keys requests are fetching now, each with what wakes those waiting for it.
#[derive(Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
}

impl InFlight {
    /// The claim to fetch `key`, or, when another request holds it, what to wait on (it closes
    /// when that request has stored the object or given up).
    pub fn claim(&self, key: &str) -> Result<Claim, watch::Receiver<()>> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = keys.get(key) {
            return Err(waiting.clone());
        }
        let (done, waiting) = watch::channel(());
        keys.insert(key.to_string(), waiting);
        Ok(Claim {
            key: key.to_string(),
            keys: self.keys.clone(),
            _done: done,
        })
    }
}

/// A request's claim to fetch a missing object; those waiting for it wake when it is dropped.
pub struct Claim {
    key: String,
    keys: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    _done: watch::Sender<()>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(&self.key);
    }
}
