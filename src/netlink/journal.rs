//! Undo journal: every object we create is recorded with the step that
//! removes it, so a failure at any point rolls the host back to exactly what
//! it was. Modelled on the reference CNI plugins' deferred rollback.
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;

type UndoFuture = Pin<Box<dyn Future<Output = Result<()>>>>;

#[derive(Default)]
pub struct Journal {
    steps: Vec<(String, UndoFuture)>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record how to undo something that was just created. Futures are lazy:
    /// `undo` only runs if we roll back.
    pub fn record(
        &mut self,
        what: impl Into<String>,
        undo: impl Future<Output = Result<()>> + 'static,
    ) {
        self.steps.push((what.into(), Box::pin(undo)));
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Success: forget the undo steps, the objects stay.
    pub fn commit(mut self) {
        self.steps.clear();
    }

    /// Failure: undo in reverse order. Undo errors are reported but do not
    /// stop the remaining steps — leaving less behind is always better.
    pub async fn rollback(mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            if let Err(e) = undo.await {
                eprintln!("pipework: rollback: could not undo {what}: {e}");
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if !self.steps.is_empty() && !std::thread::panicking() {
            // A journal dropped without commit or rollback is a bug in the
            // caller; say so loudly rather than silently leaking objects.
            eprintln!(
                "pipework: internal error: {} undo step(s) dropped without rollback",
                self.steps.len()
            );
        }
    }
}
