"""A kafka-python session against one broker: metadata, produce, fetch back.

Usage: kafka_session.py BROKER_IP:PORT TOPIC N [SIZE]
  N messages (of SIZE bytes, when given) with acks=1 to partition 0, each waited for; then a consumer with assign() (no group:
  groups are flaky on tansu) reads partition 0 from offset 0 until it has the N messages (15 s at
  most). Prints one JSON line: {"offsets": [...], "fetched": [...]}.

api_version pins the versions kafka-python uses to ones tshark 4.0 decodes (Produce v8, Fetch v11,
Metadata v9, ApiVersions v3), so the test can compare podtap with tshark field by field.
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

broker, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = int(sys.argv[4]) if len(sys.argv) > 4 else 0


def message(i):
    text = b"message-%d" % i
    return text + b"." * max(0, size - len(text))


common = dict(bootstrap_servers=broker, api_version=(2, 5), request_timeout_ms=10000)

producer = KafkaProducer(client_id="podtap-producer", acks=1, linger_ms=0, **common)
offsets = [
    producer.send(topic, message(i), partition=0).get(timeout=10).offset
    for i in range(n)
]
producer.close()

consumer = KafkaConsumer(client_id="podtap-consumer", group_id=None, enable_auto_commit=False, **common)
partition = TopicPartition(topic, 0)
consumer.assign([partition])
consumer.seek(partition, 0)
fetched = []
deadline = time.monotonic() + 15
while len(fetched) < n and time.monotonic() < deadline:
    for records in consumer.poll(timeout_ms=500).values():
        fetched += [r.value.decode()[:20] for r in records]
consumer.close()

print(json.dumps({"offsets": offsets, "fetched": fetched}), flush=True)
