//! The Kafka bus against the real Kafka-protocol broker of the test bed.

use std::time::Duration;

use chainwatch_devkit::testbed::{kafka_bootstrap, unique};
use chainwatch_platform::bus::kafka::{KafkaArgs, TopicSpec};
use chainwatch_platform::bus::{Consumer, Producer};

#[tokio::test]
async fn large_records_round_trip_and_positions_only_pass_processed_records() {
    let args = KafkaArgs::new(kafka_bootstrap());
    let topic = unique("cw-test-bus");
    let admin = args.admin().unwrap();
    assert_eq!(
        admin
            .ensure_topic(&TopicSpec {
                name: topic.clone(),
                partitions: 1,
                replication_factor: None,
                retention_ms: Some(3_600_000),
                compact: false
            })
            .await
            .unwrap(),
        1
    );
    let producer = args.producer().unwrap();
    // a 2 MiB record: a large block with receipts must fit
    let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    producer.send(&topic, "0", big.clone()).await.unwrap();
    for i in 1..5 {
        producer.send(&topic, &i.to_string(), vec![i as u8]).await.unwrap();
    }
    let group = unique("cw-test-group");
    let consumer = args.consumer(&group, &[&topic]).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a record within 30 s")
        .unwrap();
    assert_eq!(first.payload, big);
    let mut rest = Vec::new();
    for _ in 1..5 {
        rest.push(tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.unwrap().unwrap());
    }
    // process 0, 2 and 3 but not 1: the stored position must stay at 1
    consumer.done(&first);
    consumer.done(&rest[1]);
    consumer.done(&rest[2]);
    consumer.commit().await.unwrap();
    drop(consumer);
    let again = args.consumer(&group, &[&topic]).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), again.recv()).await.unwrap().unwrap();
    assert_eq!(next.offset, 1, "the unprocessed record comes back");
    drop(again);
    admin.delete_topic(&topic).await.unwrap();
}

#[tokio::test]
async fn topics_grow_but_never_shrink() {
    let args = KafkaArgs::new(kafka_bootstrap());
    let admin = args.admin().unwrap();
    let name = unique("cw-test-admin");
    let spec = |partitions| TopicSpec {
        name: name.clone(),
        partitions,
        replication_factor: None,
        retention_ms: None,
        compact: false,
    };
    assert_eq!(admin.ensure_topic(&spec(2)).await.unwrap(), 2);
    assert_eq!(admin.partitions(&name).await.unwrap(), Some(2));
    assert_eq!(admin.ensure_topic(&spec(4)).await.unwrap(), 4);
    assert_eq!(admin.partitions(&name).await.unwrap(), Some(4));
    assert_eq!(admin.ensure_topic(&spec(1)).await.unwrap(), 4, "partitions are never removed");
    admin.delete_topic(&name).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin.partitions(&name).await.unwrap(), None);
}
