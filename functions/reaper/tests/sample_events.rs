//! Feeds the scheduled-event sample in `events/reaper/` through the reaper's handler, on
//! the AWS adapters against the emulator that `scripts/test` starts.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use envplane_aws::config::{concluding_platform, AwsPlatform};
use envplane_aws::emulator::Stack;
use envplane_aws::reaper::{handle_schedule, DeadLetters, Reaped};

fn sample() -> EventBridgeEvent<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/reaper/scheduled.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_scheduled_sample_drains_the_dead_letter_queue() {
    let stack = Stack::create("https://api.envplane.example.com").await;
    let AwsPlatform { platform, .. } = concluding_platform(&stack.settings, &stack.sdk);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    // A deployment message of a deployment that is gone, and a message that is none.
    let gone = r#"{"org_id":"org_1","environment_id":"env_1","deployment_id":"dep_1"}"#;
    for body in [gone, "not json"] {
        sqs.send_message()
            .queue_url(&stack.dead_letter_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let dead_letters = DeadLetters::new(sqs, &stack.dead_letter_queue_url);

    let reaped = handle_schedule(&platform, &dead_letters, sample())
        .await
        .unwrap();
    assert_eq!(
        reaped,
        Reaped {
            concluded: 1,
            stops_dropped: 0,
            unreadable: 1,
            retried: 0
        }
    );
    let again = handle_schedule(&platform, &dead_letters, sample())
        .await
        .unwrap();
    assert_eq!(again, Reaped::default());
}
