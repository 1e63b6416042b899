"""`nurture_consumer_lag_records` grows while a consumer is stuck: the end offsets are asked of
the broker at each refresh, not taken from the consumer's last fetch (which stops moving when
the consumer stops consuming). Real Kafka, a real consumer that stops consuming while records
keep arriving."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from services.common.kafka.topics import Topics
from services.common.observability.metrics import ConsumerLag, new_registry
from tests.support import isolated_kafka, unique, wait_until

GROUP = "lag-test"


async def test_the_lag_of_a_stuck_consumer_grows(kafka_bootstrap: str) -> None:
    kafka = await isolated_kafka(kafka_bootstrap, partitions=1)
    topic = Topics(kafka.topic_prefix).scored_events
    registry = new_registry()
    lag = ConsumerLag(registry)

    def value() -> float | None:
        return registry.get_sample_value("nurture_consumer_lag_records",
                                         {"group": GROUP, "topic": topic})

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=unique(GROUP),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"x%d" % i)
        consumer.assign([TopicPartition(topic, 0)])
        got: list[object] = []

        async def read_one() -> bool:  # consumes one record: then stops consuming
            batch = await consumer.getmany(timeout_ms=500, max_records=1)
            got.extend(r for rs in batch.values() for r in rs)
            return bool(got)

        await wait_until(read_one, timeout=60, what="the first record")
        await lag.update(consumer, GROUP)
        assert value() == 4
        for i in range(5, 12):  # records keep arriving; the consumer reads none of them
            await producer.send_and_wait(topic, b"x%d" % i)

        async def grown() -> bool:
            await lag.update(consumer, GROUP)
            return value() == 11

        await wait_until(grown, timeout=60, what=f"the lag to reach 11 (it is {value()})")
        consumer.assign([])  # no partition of the topic any more: its lag reads 0
        await lag.update(consumer, GROUP)
        assert value() == 0
    finally:
        await consumer.stop()
        await producer.stop()
