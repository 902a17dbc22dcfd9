//! The test support's own promises, where a broken one would let the other tests lie or litter.

use std::sync::{Arc, Mutex};

use crate::support::{sdk_config, Endpoints, StackOptions, TestStack};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulators: run scripts/test"]
async fn a_test_that_panics_still_deletes_its_queues_and_rule() {
    let made = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&made);
    let failed = tokio::spawn(async move {
        let stack = TestStack::spawn(StackOptions::default()).await;
        *seen.lock().expect("seen") = Some(stack.name.clone());
        panic!("a failing test (on purpose)");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()), "the test panicked");
    let name = made
        .lock()
        .expect("made")
        .clone()
        .expect("the stack was made before the panic");

    let sdk = sdk_config(&Endpoints::from_env().aws);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    for queue in [name.clone(), format!("{name}-dlq")] {
        let found = sqs.get_queue_url().queue_name(&queue).send().await;
        assert!(found.is_err(), "queue {queue} is gone: {found:?}");
    }
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let rule = format!("{name}-rule");
    let found = events.describe_rule().name(&rule).send().await;
    assert!(found.is_err(), "rule {rule} is gone: {found:?}");
}
