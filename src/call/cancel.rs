//! The cancellation token a call is given: whoever owns Ctrl-C (the CLI)
//! cancels it, and every call holding a clone hangs up (CANCEL or BYE).

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable; cancelling any clone cancels them all, once and for good.
#[derive(Debug, Clone)]
pub struct Cancel {
    sender: Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    pub fn new() -> Self {
        let (sender, receiver) = watch::channel(false);
        Cancel { sender: Arc::new(sender), receiver }
    }

    pub fn cancel(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once cancelled (never, if no clone ever cancels).
    pub async fn cancelled(&self) {
        let mut receiver = self.receiver.clone();
        // The sender lives as long as any clone (self included): no error.
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_clone_cancels_them_all() {
        let cancel = Cancel::new();
        let other = cancel.clone();
        assert!(!other.is_cancelled());
        let waiting = tokio::spawn({
            let other = other.clone();
            async move { other.cancelled().await }
        });
        cancel.cancel();
        assert!(other.is_cancelled());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("cancelled() resolves")
            .expect("task");
    }
}
