//! Bounded, batched channels: the shape of every record pipeline here.
//!
//! A channel send per record costs more than the work on the record, and an unbounded channel
//! lets a fast producer fill memory. So records travel in batches (1 to 8192) through a
//! channel with a fixed number of batch slots: a full channel makes the producer wait.

use tokio::sync::mpsc;

/// The largest batch allowed.
pub const MAX_BATCH: usize = 8192;

/// The receiver went away; the undelivered records come back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub Vec<T>);

/// Buffers records and sends them as batches.
#[derive(Debug)]
pub struct BatchSender<T> {
    tx: mpsc::Sender<Vec<T>>,
    buf: Vec<T>,
    batch_size: usize,
}

/// Receives batches.
#[derive(Debug)]
pub struct BatchReceiver<T> {
    rx: mpsc::Receiver<Vec<T>>,
}

/// A channel holding at most `capacity_batches` batches of `batch_size` records (clamped to
/// 1..=[`MAX_BATCH`]); so at most `capacity_batches * batch_size` records are in flight.
pub fn batch_channel<T>(
    capacity_batches: usize,
    batch_size: usize,
) -> (BatchSender<T>, BatchReceiver<T>) {
    let batch_size = batch_size.clamp(1, MAX_BATCH);
    let (tx, rx) = mpsc::channel(capacity_batches.max(1));
    (
        BatchSender {
            tx,
            buf: Vec::with_capacity(batch_size),
            batch_size,
        },
        BatchReceiver { rx },
    )
}

impl<T> BatchSender<T> {
    /// Adds a record; sends the batch when it is full (waiting while the channel is full).
    pub async fn push(&mut self, record: T) -> Result<(), Closed<T>> {
        self.buf.push(record);
        if self.buf.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends whatever is buffered.
    pub async fn flush(&mut self) -> Result<(), Closed<T>> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.buf, Vec::with_capacity(self.batch_size));
        self.tx.send(batch).await.map_err(|e| Closed(e.0))
    }

    /// Flushes and closes the channel (the receiver sees the end after the last batch).
    pub async fn finish(mut self) -> Result<(), Closed<T>> {
        self.flush().await
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
}

impl<T> BatchReceiver<T> {
    /// The next batch, or `None` once every sender has finished.
    pub async fn recv(&mut self) -> Option<Vec<T>> {
        self.rx.recv().await
    }

    /// The channel underneath, for a consumer that takes any bounded receiver of batches.
    pub fn into_inner(self) -> mpsc::Receiver<Vec<T>> {
        self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_records_and_flushes_the_rest() {
        let (mut tx, mut rx) = batch_channel::<u32>(4, 3);
        let producer = tokio::spawn(async move {
            for i in 0..8 {
                tx.push(i).await.unwrap();
            }
            tx.finish().await.unwrap();
        });
        let mut batches = Vec::new();
        while let Some(b) = rx.recv().await {
            batches.push(b);
        }
        producer.await.unwrap();
        assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_channel_makes_the_producer_wait() {
        let (mut tx, mut rx) = batch_channel::<u32>(1, 2);
        let producer = tokio::spawn(async move {
            for i in 0..6 {
                tx.push(i).await.unwrap();
            }
            tx.finish().await.unwrap();
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        // One batch in the channel, the producer blocked on the second send.
        assert!(!producer.is_finished());
        let mut n = 0;
        while let Some(b) = rx.recv().await {
            n += b.len();
        }
        producer.await.unwrap();
        assert_eq!(n, 6);
    }

    #[tokio::test]
    async fn a_dropped_receiver_returns_the_records() {
        let (mut tx, rx) = batch_channel::<u32>(1, 2);
        drop(rx);
        tx.push(1).await.unwrap();
        assert_eq!(tx.push(2).await, Err(Closed(vec![1, 2])));
    }

    #[test]
    fn batch_size_is_clamped() {
        assert_eq!(batch_channel::<u8>(1, 0).0.batch_size(), 1);
        assert_eq!(batch_channel::<u8>(1, 1 << 20).0.batch_size(), MAX_BATCH);
    }
}
