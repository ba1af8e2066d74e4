//! Per-container queues: events for one container are handled in order
//! (its `die` before its next `start`), different containers concurrently,
//! so twenty containers restarting at once are plumbed side by side.
//!
//! One thread per busy container, each with its own single-threaded
//! runtime (an attach's undo journal holds futures that stay on their
//! thread). A worker idle for a while exits; the queue map's lock makes
//! "nothing queued, so remove myself" atomic with respect to new work.
use super::Ctx;
use super::plumb;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub enum Job {
    Start {
        name: String,
        labels: BTreeMap<String, String>,
        event_ns: Option<u128>,
    },
    Die {
        name: String,
    },
}

const IDLE: Duration = Duration::from_secs(30);

type Queues = Arc<Mutex<HashMap<String, Sender<Job>>>>;

pub struct Pool {
    queues: Queues,
    cx: Arc<Ctx>,
}

impl Pool {
    pub fn new(cx: Arc<Ctx>) -> Pool {
        Pool {
            queues: Arc::default(),
            cx,
        }
    }

    pub fn submit(&self, id: &str, job: Job) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let job = match q.get(id) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => job,
        };
        let (tx, rx) = channel();
        let _ = tx.send(job);
        q.insert(id.to_string(), tx);
        let (id, queues, cx) = (id.to_string(), self.queues.clone(), self.cx.clone());
        let spawned = std::thread::Builder::new()
            .name("pw-watch".into())
            .spawn(move || work(&id, rx, &queues, &cx));
        if let Err(e) = spawned {
            super::log(format_args!("cannot start a worker thread: {e}"));
        }
    }
}

fn work(id: &str, rx: Receiver<Job>, queues: &Queues, cx: &Arc<Ctx>) {
    let rt = match crate::rt::current() {
        Ok(rt) => rt,
        Err(e) => {
            super::log(format_args!("cannot start a runtime: {e}"));
            return;
        }
    };
    loop {
        let job = match rx.recv_timeout(IDLE) {
            Ok(j) => j,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut q = queues.lock().unwrap_or_else(|p| p.into_inner());
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => {
                        q.remove(id);
                        return;
                    }
                }
            }
        };
        rt.block_on(async {
            match job {
                Job::Start {
                    name,
                    labels,
                    event_ns,
                } => plumb::start(cx, id, &name, &labels, event_ns).await,
                Job::Die { name } => plumb::die(cx, id, &name).await,
            }
        });
    }
}
