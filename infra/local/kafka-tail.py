#!/usr/bin/env python3
"""Prints every message of a Kafka topic, from the beginning, as `key<TAB>value`, and follows it.

    .venv/bin/python infra/local/kafka-tail.py buildlogs            # follow until Ctrl-C
    .venv/bin/python infra/local/kafka-tail.py --once buildlogs     # stop at the end

The broker is --bootstrap, else $KAFKA_BOOTSTRAP, else 127.0.0.1:$KAFKA_PORT (default 19092):
the one `make run` starts. `make run` installs confluent-kafka into .venv/. Reads every partition
of the topic (a topic a producer creates gets several), without a consumer group (no rebalance
to wait for, nothing committed); waits for the topic if it does not exist yet.
"""

import argparse
import os
import sys
import time

try:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
except ImportError:
    sys.exit("kafka-tail: no confluent_kafka here; run it with .venv/bin/python (`make run` installs it there)")


def text(data):
    if data is None:
        return ""
    return data.decode("utf-8", errors="replace").rstrip("\r\n")


def main():
    default = os.environ.get("KAFKA_BOOTSTRAP") or "127.0.0.1:" + os.environ.get("KAFKA_PORT", "19092")
    parser = argparse.ArgumentParser(description="Print a Kafka topic's messages (key<TAB>value) from the beginning.")
    parser.add_argument("topic")
    parser.add_argument("--bootstrap", default=default, help=f"host:port of a broker (default {default})")
    parser.add_argument("--once", action="store_true", help="stop once every partition is read to its end")
    args = parser.parse_args()

    said = set()

    def on_error(error):  # once per kind, not once per reconnect (librdkafka retries forever)
        if error.code() not in said:
            said.add(error.code())
            print(f"kafka-tail: {error.str()}", file=sys.stderr)

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "kafka-tail",  # never joined: partitions are assigned by hand
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "log_level": 2,  # librdkafka's own log: only above errors; errors go to on_error
        "error_cb": on_error,
    })
    try:
        try:
            consumer.list_topics(timeout=5)
        except KafkaException:
            sys.exit(f"kafka-tail: no Kafka broker answers at {args.bootstrap} (is `make run` running?)")

        waiting = False
        while True:
            topic = consumer.list_topics(args.topic, timeout=5).topics.get(args.topic)
            if topic is not None and topic.error is None and topic.partitions:
                break
            if args.once:
                sys.exit(f"kafka-tail: no topic {args.topic} at {args.bootstrap}")
            if not waiting:
                print(f"kafka-tail: waiting for topic {args.topic} at {args.bootstrap}", file=sys.stderr)
                waiting = True
            time.sleep(0.5)

        partitions = sorted(topic.partitions)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end = set()
        while not (args.once and at_end.issuperset(partitions)):
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    continue
                raise KafkaException(message.error())
            at_end.discard(message.partition())
            print(f"{text(message.key())}\t{text(message.value())}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
