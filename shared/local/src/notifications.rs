//! Notifications in this process: queued on a channel (a retry after its backoff),
//! each delivered on a task of its own, so one slow target holds up no other. Deliveries
//! waiting here are lost when the process stops (docs/notifications.md).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use envplane_core::ports::{NotificationDelivery, Notifier};
use envplane_core::Platform;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

/// Deliveries in flight at once.
const CONCURRENT_DELIVERIES: usize = 16;

pub struct ChannelNotifier {
    deliveries: UnboundedSender<NotificationDelivery>,
}

impl ChannelNotifier {
    pub fn new() -> (Self, UnboundedReceiver<NotificationDelivery>) {
        let (deliveries, received) = unbounded_channel();
        (Self { deliveries }, received)
    }
}

#[async_trait]
impl Notifier for ChannelNotifier {
    async fn enqueue(&self, delivery: NotificationDelivery, delay: Duration) {
        let deliveries = self.deliveries.clone();
        // Closed only when the process stops.
        if delay.is_zero() {
            let _ = deliveries.send(delivery);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = deliveries.send(delivery);
            });
        }
    }
}

/// Delivers what is queued, at most [`CONCURRENT_DELIVERIES`] at once.
pub(crate) async fn notification_loop(
    platform: Arc<Platform>,
    mut deliveries: UnboundedReceiver<NotificationDelivery>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    while let Some(delivery) = deliveries.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let platform = platform.clone();
        tokio::spawn(async move {
            if let Err(error) = platform.deliver_notification(&delivery).await {
                tracing::warn!(target_id = %delivery.target_id, %error, "a notification could not be delivered; dropped");
            }
            drop(slot);
        });
    }
}
